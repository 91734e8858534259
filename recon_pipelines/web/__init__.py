"""The triage web application: a queue of discrepancies for the people who act on them."""
