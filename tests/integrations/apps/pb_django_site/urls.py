from __future__ import annotations

from django.urls import path

from pb_django_site import views

urlpatterns = [
    path("health", views.health),
    path("buy", views.buy),
    path("abuy", views.abuy),
    path("explicit", views.explicit),
    path("with-request", views.with_request),
    path("checkout", views.checkout),
    path("twice-with-request", views.twice_with_request),
]
