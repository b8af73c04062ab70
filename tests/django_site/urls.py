"""The test project's one URL."""

from django.urls import path

from tests.django_site.views import register

urlpatterns = [path("register", register)]
