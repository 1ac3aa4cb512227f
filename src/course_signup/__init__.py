"""course-signup: a course sign-up service with seat limits, waitlists and a registrar's API."""

__version__ = "0.1.0"
