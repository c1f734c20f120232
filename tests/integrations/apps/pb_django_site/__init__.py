"""A minimal Django project using the postback app (in-process tests and real servers)."""
