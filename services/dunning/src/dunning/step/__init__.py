"""Steps reached by cases: the daily evaluation of open cases against their seller's policy."""
