"""Training machinery: the target/reference classifier pair of one searcher."""
