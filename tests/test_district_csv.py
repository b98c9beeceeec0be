"""Loading a user's district from CSV: the example files, the fallback grid, and error messages."""

from __future__ import annotations

import csv
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtri

from portfolio_sim.district import BAND_STRUCTURES, DistrictData, band_of_grade, build_district
from portfolio_sim.district_csv import load_district_csv
from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import District

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "district_example"
SCHOOLS = EXAMPLE / "schools.csv"
NEIGHBOURHOODS = EXAMPLE / "neighbourhoods.csv"

HEADER = "id,name,x,y,grades,capacity,enrollment,rating,sector\n"
GOOD_ROWS = [
    "A1,Alpha Elementary,0,0,K-5,300,280,40,district\n",
    "B1,Beta Middle,2,1,6-8,400,350,,district\n",
    "C1,Gamma High,4,3,9-12,900,800,70,\n",
    "D1,Delta Charter,1,3,K-5,200,150,,charter\n",
]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _load(schools: Path | str, nb_csv: Path | str | None = None, seed: int = 7, years: int = 10,
          **kw) -> DistrictData:
    spec = District(schools_csv=str(schools), neighbourhoods_csv=str(nb_csv) if nb_csv else None, **kw)
    return load_district_csv(spec, np.random.default_rng(seed), years)


def _write(tmp_path: Path, text: str | bytes, name: str = "schools.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def _error(tmp_path: Path, text: str | bytes, **kw) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        _load(p, **kw)
    return str(info.value)


# ------------------------------------------------------------------------------------------------
# The example district
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example() -> DistrictData:
    return _load(SCHOOLS, NEIGHBOURHOODS)


def test_example_schools_match_the_csv(example: DistrictData) -> None:
    rows = _csv_rows(SCHOOLS)
    assert len(rows) == 22
    assert len(example.sc_name) == 22
    # District schools first, then the two charters, CSV order within each.
    assert example.sc_charter.tolist() == [False] * 20 + [True] * 2
    assert example.sc_name[-2:] == ["Bright Futures Charter Academy", "Summit Preparatory Charter"]
    assert example.sc_name[0] == "Riverside Elementary"
    by_name = {r["name"]: r for r in rows}
    bands = {"K-5": 0, "6-8": 1, "9-12": 2}
    for i, name in enumerate(example.sc_name):
        row = by_name[name]
        assert example.sc_band[i] == bands[row["grades"]]
        assert example.sc_capacity[i] == int(row["capacity"])
        assert example.sc_enrollment[i] == int(row["enrollment"])
        assert example.sc_charter[i] == (row["sector"] == "charter")
        if row["rating"]:
            assert example.sc_rating[i] == float(row["rating"])
        else:
            assert math.isnan(example.sc_rating[i])
    district = ~example.sc_charter
    assert np.bincount(example.sc_band[district], minlength=3).tolist() == [12, 5, 3]
    assert int(example.sc_capacity.sum()) == sum(int(r["capacity"]) for r in rows) == 8550
    assert int(example.sc_enrollment.sum()) == 7649
    assert example.sc_capacity.dtype == np.int32 and example.sc_enrollment.dtype == np.int32
    # Blank ratings: Garfield Elementary (district) and Summit Preparatory Charter.
    blank = [example.sc_name[i] for i in np.flatnonzero(np.isnan(example.sc_rating))]
    assert blank == ["Garfield Elementary", "Summit Preparatory Charter"]
    example.validate()


def test_example_quality_follows_rating(example: DistrictData) -> None:
    sd = District().initial_quality_sd
    rated = ~np.isnan(example.sc_rating)
    expected = sd * ndtri(np.clip(example.sc_rating[rated], 1, 99) / 100)
    np.testing.assert_allclose(example.sc_quality[rated], expected)
    i = example.sc_name.index("Riverside Elementary")            # rating 18 -> below average
    assert example.sc_quality[i] == pytest.approx(sd * ndtri(0.18))
    assert example.sc_quality[i] < 0
    # Unrated schools get a finite draw within the clipped range.
    z_max = ndtri(0.99)
    unrated = example.sc_quality[~rated]
    assert np.isfinite(unrated).all() and (np.abs(unrated) <= sd * z_max + 1e-12).all()


def test_example_students_and_households_match_neighbourhoods(example: DistrictData) -> None:
    rows = _csv_rows(NEIGHBOURHOODS)
    low = np.array([int(r["students_low_income"]) for r in rows])
    other = np.array([int(r["students_other"]) for r in rows])
    assert len(example.nb_xy) == 16
    active = example.st_grade >= 0
    assert int(active.sum()) == int(low.sum() + other.sum()) == 8080
    hh = example.st_household[active]
    nb = example.hh_nb[hh]
    is_low = example.hh_low_income[hh]
    # Exactly the CSV's students, per neighbourhood and income group.
    assert np.bincount(nb[is_low], minlength=16).tolist() == low.tolist()
    assert np.bincount(nb[~is_low], minlength=16).tolist() == other.tolist()
    # Spare slots for cohort growth exist, every household has a slot, grades cover K-12.
    assert len(example.st_grade) > active.sum()
    assert set(np.unique(example.st_household)) == set(range(len(example.hh_nb)))
    assert set(np.unique(example.st_grade[active])) == set(range(13))
    # About students_per_household slots per household.
    assert len(example.st_grade) / len(example.hh_nb) == pytest.approx(1.6, rel=0.1)
    # Neighbourhood income mix follows the CSV.
    np.testing.assert_allclose(example.nb_low_income, low / (low + other), atol=0.06)


def test_example_locations_keep_aspect_ratio(example: DistrictData) -> None:
    rows = _csv_rows(SCHOOLS)
    xy = {r["name"]: (float(r["x"]), float(r["y"])) for r in rows}
    for arr in (example.sc_xy, example.hh_xy, example.nb_xy):
        assert (arr >= 0).all() and (arr <= 1).all()
    # Distances scale by one factor in both directions.
    a, b, c = "Riverside Elementary", "Lakeshore Elementary", "Cedar Street Elementary"
    ia, ib, ic = (example.sc_name.index(n) for n in (a, b, c))
    ratio_ab = np.linalg.norm(example.sc_xy[ia] - example.sc_xy[ib]) / math.dist(xy[a], xy[b])
    ratio_ac = np.linalg.norm(example.sc_xy[ia] - example.sc_xy[ic]) / math.dist(xy[a], xy[c])
    assert ratio_ab == pytest.approx(ratio_ac)
    # Households sit near their neighbourhood's point.
    d = np.linalg.norm(example.hh_xy - example.nb_xy[example.hh_nb], axis=1)
    assert d.max() <= 0.1 + 1e-9


def test_loader_is_deterministic_for_a_seed() -> None:
    a, b = _load(SCHOOLS, NEIGHBOURHOODS, seed=3), _load(SCHOOLS, NEIGHBOURHOODS, seed=3)
    for f in ("hh_xy", "hh_nb", "hh_low_income", "st_household", "st_grade", "sc_quality", "nb_low_income"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = _load(SCHOOLS, NEIGHBOURHOODS, seed=4)
    assert not np.array_equal(a.hh_xy, c.hh_xy)
    assert not np.array_equal(a.sc_quality, c.sc_quality)
    # Rated schools do not depend on the seed.
    rated = ~np.isnan(a.sc_rating)
    np.testing.assert_array_equal(a.sc_quality[rated], c.sc_quality[rated])


def test_build_district_dispatches_to_csv() -> None:
    spec = District(schools_csv=str(SCHOOLS), neighbourhoods_csv=str(NEIGHBOURHOODS))
    data = build_district(spec, np.random.default_rng(1), 5)
    assert data.sc_name[0] == "Riverside Elementary"


def test_without_neighbourhoods_a_grid_holds_the_enrolled_students() -> None:
    data = _load(SCHOOLS, neighbourhoods=25, seed=2)
    assert len(data.nb_xy) == 25
    assert int((data.st_grade >= 0).sum()) == 7649            # all schools' enrollment, charters included
    data.validate()
    # The grid covers the schools' bounding box.
    lo, hi = data.sc_xy.min(axis=0), data.sc_xy.max(axis=0)
    assert (data.nb_xy.min(axis=0) >= lo - 0.06).all() and (data.nb_xy.max(axis=0) <= hi + 0.06).all()
    assert 0.3 < data.hh_low_income.mean() < 0.8


def test_example_scenario_file() -> None:
    text = (EXAMPLE / "scenario.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert data == {
        "extends": "baseline", "name": "csv_example",
        "description": "Example of a user's own district loaded from CSV (illustrative data).",
        "district": {"schools_csv": "schools.csv", "neighbourhoods_csv": "neighbourhoods.csv"},
    }


def test_example_scenario_loads_with_paths_relative_to_it() -> None:
    from portfolio_sim.scenario import load_scenario, presets_dir
    try:
        has_baseline = (presets_dir() / "baseline.toml").is_file()
    except ScenarioError:
        has_baseline = False
    if not has_baseline:
        pytest.skip("the baseline preset is not present")
    sc = load_scenario(EXAMPLE / "scenario.toml")
    assert Path(sc.district.schools_csv) == SCHOOLS
    assert Path(sc.district.neighbourhoods_csv) == NEIGHBOURHOODS
    data = build_district(sc.district, np.random.default_rng(0), sc.run.years)
    assert len(data.sc_name) == 22


# ------------------------------------------------------------------------------------------------
# Other accepted forms
# ------------------------------------------------------------------------------------------------

def test_lenient_but_unambiguous_forms(tmp_path: Path) -> None:
    text = ("\ufeffID, Name ,X,Y,Grades,Capacity,Enrollment,Rating,Sector,Notes\n"
            'A1,"Alpha, the school",0,0,KG-5,"1,200",1100.0,40%,District,whatever\n'
            "B1,,2,1,6 - 8,400,350,,,\n"
            "\n"
            "C1,Gamma High,4,3,9–12,900,800,70,,\n"
            "D1,Delta Charter,1,3,0-5,200,150,,CHARTER,\n")
    data = _load(_write(tmp_path, text))
    assert data.sc_name == ["Alpha, the school", "B1", "Gamma High", "Delta Charter"]
    assert data.sc_band.tolist() == [0, 1, 2, 0]
    assert data.sc_capacity.tolist() == [1200, 400, 900, 200]
    assert data.sc_enrollment.tolist() == [1100, 350, 800, 150]
    assert data.sc_charter.tolist() == [False, False, False, True]
    assert data.sc_rating[0] == 40.0


def test_k8_band_structure(tmp_path: Path) -> None:
    text = HEADER + "A,K8 One,0,0,K-8,500,450,50,\nB,High One,3,2,9-12,900,800,,\n"
    data = _load(_write(tmp_path, text), band_structure="k8-912")
    assert data.sc_band.tolist() == [0, 1]
    assert data.n_bands == len(BAND_STRUCTURES["k8-912"])
    assert (band_of_grade("k8-912")[data.st_grade[data.st_grade >= 0]] >= 0).all()


def test_longitude_latitude_columns_are_corrected_for_latitude(tmp_path: Path) -> None:
    # At 60 degrees north one degree of longitude is half as long as one of latitude.
    text = ("id,name,lon,lat,grades,capacity,enrollment\n"
            "A,A,10.0,60.0,K-5,300,250\nB,B,10.2,60.0,6-8,300,250\nC,C,10.0,60.1,9-12,300,250\n")
    data = _load(_write(tmp_path, text))
    east = np.linalg.norm(data.sc_xy[1] - data.sc_xy[0])
    north = np.linalg.norm(data.sc_xy[2] - data.sc_xy[0])
    assert east == pytest.approx(north, rel=0.01)
    bad = text.replace("60.1,9-12", "95,9-12")
    msg = _error(tmp_path, bad)
    assert "line 4, column lat: '95' is out of range" in msg and "-90 to 90" in msg


# ------------------------------------------------------------------------------------------------
# Errors: file, line, column, value and what is allowed
# ------------------------------------------------------------------------------------------------

def _with_row(i: int, row: str) -> str:
    rows = list(GOOD_ROWS)
    rows[i] = row
    return HEADER + "".join(rows)


def test_good_rows_load(tmp_path: Path) -> None:
    data = _load(_write(tmp_path, HEADER + "".join(GOOD_ROWS)))
    assert len(data.sc_name) == 4


def test_non_numeric_capacity(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(1, "B1,Beta Middle,2,1,6-8,abc,350,,district\n"))
    path = str(tmp_path / "schools.csv")
    assert msg == f"{path} line 3, column capacity: 'abc' is not a whole number > 0"


def test_zero_and_fractional_capacity(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,0,0,,\n"))
    assert "line 2, column capacity: '0' is not a whole number > 0" in msg
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,300.5,0,,\n"))
    assert "line 2, column capacity: '300.5' is not a whole number > 0" in msg


def test_negative_enrollment(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(2, "C1,Gamma High,4,3,9-12,900,-5,70,\n"))
    assert "schools.csv line 4, column enrollment: '-5' is not a whole number >= 0" in msg


def test_enrollment_over_one_and_a_half_capacity(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,300,451,,\n"))
    assert "line 2, column enrollment: '451' is more than 1.5 x capacity (300)" in msg
    assert "from 0 to 450" in msg
    _load(_write(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,300,450,,\n")))   # exactly 1.5x is fine


def test_unknown_grades(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-12,300,280,,\n"))
    assert "schools.csv line 2, column grades: 'K-12' is not a grade range of this district" in msg
    assert "allowed: one of K-5, 6-8, 9-12 (band_structure 'k5-68-912')" in msg
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,elementary,300,280,,\n"))
    assert "column grades: 'elementary' is not a grade range" in msg


def test_grades_of_the_other_band_structure_get_a_hint(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-8,300,280,,\n"))
    assert "column grades: 'K-8'" in msg and "district.band_structure = \"k8-912\"" in msg


def test_spreadsheet_date_in_grades(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(1, "B1,Beta,2,1,8-Jun,400,350,,\n"))
    assert "line 3, column grades: '8-Jun'" in msg and "date" in msg


def test_rating_and_sector_values(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,300,280,150,magnet\n"))
    assert "line 2, column rating: '150' is outside 0-100" in msg
    assert "line 2, column sector: 'magnet' is not a sector; allowed: district" in msg and "charter" in msg


def test_duplicate_id(tmp_path: Path) -> None:
    msg = _error(tmp_path, HEADER + "".join(GOOD_ROWS) + "A1,Another,5,5,K-5,300,200,,\n")
    assert "schools.csv line 6, column id: 'A1' is a duplicate: already used on line 2; ids must be unique" in msg


def test_non_finite_coordinate(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(1, "B1,Beta,inf,1,6-8,400,350,,\n"))
    assert "schools.csv line 3, column x: 'inf' is not a finite number" in msg
    msg = _error(tmp_path, _with_row(1, "B1,Beta,2,NaN,6-8,400,350,,\n"))
    assert "line 3, column y: 'NaN' is not a finite number" in msg
    msg = _error(tmp_path, _with_row(1, "B1,Beta,2,1e999,6-8,400,350,,\n"))
    assert "line 3, column y: '1e999' is not a finite number" in msg
    msg = _error(tmp_path, _with_row(1, "B1,Beta,\"2,5\",1,6-8,400,350,,\n"))
    assert "line 3, column x: '2,5' is not" in msg and "decimal separator" in msg


def test_missing_columns_list_the_required_set(tmp_path: Path) -> None:
    text = "id,name,x,y,grades,enrollment\nA1,Alpha,0,0,K-5,280\n"
    msg = _error(tmp_path, text)
    assert str(tmp_path / "schools.csv") in msg
    assert "missing required column capacity" in msg
    assert "Required columns: id, name, x, y, grades, capacity, enrollment (optional: rating, sector)" in msg


def test_semicolon_separated_file_gets_a_hint(tmp_path: Path) -> None:
    msg = _error(tmp_path, HEADER.replace(",", ";") + GOOD_ROWS[0].replace(",", ";"))
    assert "missing required columns" in msg and "separator" in msg


def test_missing_band(tmp_path: Path) -> None:
    text = HEADER + GOOD_ROWS[0] + GOOD_ROWS[2]
    msg = _error(tmp_path, text)
    assert str(tmp_path / "schools.csv") in msg
    assert "no district school serves the middle band (grades 6-8)" in msg
    assert "add a row with grades 6-8 and sector district" in msg
    # A charter does not fill the band.
    msg = _error(tmp_path, text + "X,Charter Middle,1,1,6-8,300,200,,charter\n")
    assert "the middle band (grades 6-8) (the file has 1 charter school with 6-8; charters do not count)" in msg


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    msg = _error(tmp_path, "")
    assert "schools.csv: the schools CSV is empty" in msg
    assert "id, name, x, y, grades, capacity, enrollment" in msg
    msg = _error(tmp_path, "\n  \n")
    assert "is empty" in msg
    msg = _error(tmp_path, HEADER)
    assert "has a header but no school rows" in msg


def test_not_utf8(tmp_path: Path) -> None:
    text = (HEADER + GOOD_ROWS[0]).encode() + "B1,Écolé Beta,2,1,6-8,400,350,,\n".encode("latin-1") \
        + "".join(GOOD_ROWS[2:]).encode()
    msg = _error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'schools.csv'} line 3: not UTF-8 text (byte 0xc9)")
    assert "UTF-8" in msg


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.csv: schools CSV not found"):
        _load(tmp_path / "nope.csv")
    with pytest.raises(ScenarioError, match="is not a file"):
        _load(tmp_path)


def test_several_row_errors_are_reported_together(tmp_path: Path) -> None:
    text = HEADER + ("A1,Alpha,0,0,K-5,abc,280,,\n"
                     "B1,Beta,2,1,6-8,400,-1,,\n"
                     "C1,Gamma,4,3,9-13,900,800,,\n"
                     "A1,Dup,1,1,K-5,100,50,,\n")
    msg = _error(tmp_path, text)
    lines = msg.splitlines()
    assert lines[0] == f"{tmp_path / 'schools.csv'}: 4 problems (fix them and run again):"
    assert lines[1:] == [
        "  schools.csv line 2, column capacity: 'abc' is not a whole number > 0",
        "  schools.csv line 3, column enrollment: '-1' is not a whole number >= 0",
        lines[3],
        "  schools.csv line 5, column id: 'A1' is a duplicate: already used on line 2; ids must be unique",
    ]
    assert lines[3].startswith("  schools.csv line 4, column grades: '9-13' is not a grade range")


def test_at_most_ten_errors_are_listed(tmp_path: Path) -> None:
    rows = "".join(f"S{i},School,0,0,K-5,x{i},0,,\n" for i in range(14))
    msg = _error(tmp_path, HEADER + rows)
    lines = msg.splitlines()
    assert "14 problems" in lines[0]
    assert len(lines) == 1 + 10 + 1
    assert lines[-1] == "  ... and 4 more not shown"
    assert "line 11, column capacity: 'x9'" in lines[10]


def test_row_with_unquoted_comma(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(0, "A1,Alpha, East,0,0,K-5,300,280,40,district\n"))
    assert msg.endswith("schools.csv line 2: has 10 values but the header has 9 columns "
                        "(a value containing a comma must be in double quotes)")
    # Extra values that are blank (trailing commas) are fine ...
    data = _load(_write(tmp_path, _with_row(0, "A1,Alpha,0,0,K-5,300,280,40,district,,\n")))
    assert data.sc_capacity[0] == 300
    # ... unless the row's cells are also wrong: then the shift is the likely cause.
    msg = _error(tmp_path, _with_row(0, "A1,Alpha, East,0,0,K-5,300,280,,\n"))
    assert "line 2, column x: ' East' is not" in msg
    assert "line 2: this row has more values than the header has columns" in msg


def test_blank_required_value(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_row(1, ",Beta,2,1,6-8,,350,,\n"))
    assert "line 3, column id: blank" in msg
    assert "line 3, column capacity: blank, expected a whole number > 0" in msg


# ------------------------------------------------------------------------------------------------
# Neighbourhood file errors
# ------------------------------------------------------------------------------------------------

def _nb_error(tmp_path: Path, nb_text: str) -> str:
    schools = _write(tmp_path, HEADER + "".join(GOOD_ROWS))
    nb = _write(tmp_path, nb_text, "neighbourhoods.csv")
    with pytest.raises(ScenarioError) as info:
        _load(schools, nb)
    return str(info.value)


def test_neighbourhood_errors(tmp_path: Path) -> None:
    head = "id,x,y,students_low_income,students_other\n"
    msg = _nb_error(tmp_path, head + "N1,0,0,10,-3\nN1,1,1,ten,5\n")
    assert "neighbourhoods.csv line 2, column students_other: '-3' is not a whole number >= 0" in msg
    assert "neighbourhoods.csv line 3, column id: 'N1' is a duplicate" in msg
    assert "neighbourhoods.csv line 3, column students_low_income: 'ten' is not a whole number >= 0" in msg
    msg = _nb_error(tmp_path, head + "N1,0,0,0,0\n")
    assert "hold no students" in msg
    msg = _nb_error(tmp_path, "id,x,y,students\nN1,0,0,10\n")
    assert "missing required columns students_low_income, students_other" in msg
    msg = _nb_error(tmp_path, head + "N1,500000,4000000,10,10\n")
    assert "same coordinate units" in msg


def test_neighbourhoods_csv_loads_small(tmp_path: Path) -> None:
    schools = _write(tmp_path, HEADER + "".join(GOOD_ROWS))
    nb = _write(tmp_path, "id,x,y,students_low_income,students_other,extra\nN1,0,0,30,10,z\nN2,4,3,0,0,\n"
                "N3,2,2,5,55,\n", "neighbourhoods.csv")
    data = _load(schools, nb)
    active = data.st_grade >= 0
    assert int(active.sum()) == 100
    assert np.bincount(data.hh_nb, minlength=3)[1] == 0          # an empty neighbourhood has no households
    assert data.hh_low_income[data.hh_nb == 0].mean() > 0.5
    data.validate()


def test_unclosed_quote(tmp_path: Path) -> None:
    msg = _error(tmp_path, HEADER + GOOD_ROWS[0] + 'B1,"Beta Middle,2,1,6-8,400,350,,\n' + GOOD_ROWS[2])
    assert "schools.csv line 3: not a valid CSV row" in msg and "double quote" in msg


def test_duplicate_header_column(tmp_path: Path) -> None:
    msg = _error(tmp_path, "id,name,x,y,grades,capacity,Capacity,enrollment\nA,A,0,0,K-5,1,1,1\n")
    assert "schools.csv line 1: column 'capacity' appears twice in the header (columns 6 and 7)" in msg
