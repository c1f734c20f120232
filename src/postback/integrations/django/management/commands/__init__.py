"""``manage.py postback_worker``."""
