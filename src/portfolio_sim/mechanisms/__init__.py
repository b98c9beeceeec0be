"""One module per mechanism. Each module's docstring says what it models and which seed passage it
rests on; `portfolio_sim.model.PortfolioModel.step` calls them in the documented yearly order."""
