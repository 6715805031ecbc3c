"""Online learner: incremental VW training per decision point and model releases."""
