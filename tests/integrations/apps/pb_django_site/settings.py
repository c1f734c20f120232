"""Settings of the test Django project: the postback app, its middleware, POSTBACK from env."""

from __future__ import annotations

import pb_settings

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver", "shop.example"]
ROOT_URLCONF = "pb_django_site.urls"
INSTALLED_APPS = ["postback.integrations.django"]
MIDDLEWARE = ["postback.integrations.django.middleware.PostbackMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True

POSTBACK = pb_settings.postback_config()
POSTBACK_PLUGINS = ["postback.testing.example", "pb_context_echo", "pb_pixel_fields"]
POSTBACK_REQUEST_CONTEXT = pb_settings.request_context()
