"""Training machinery shared by the search and the test phase: the classifier pair, the stage schedule,
evaluation, resume agreement and stop requests."""
