"""Errors that come from user input (scenario files, CLI arguments, uploads, CSV files).

They carry a message that names what is wrong and what is allowed; the CLI prints it and exits 2.
"""


class ScenarioError(ValueError):
    """Bad user input: the message is shown as-is, without a traceback."""
