"""Django management commands of the postback app."""
