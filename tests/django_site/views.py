"""The README's Django example: register a user and enqueue its update in one atomic block."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, JsonResponse

from outbox_worker.django import enqueue
from outbox_worker.payload import Customer, Registration, RegistrationUpdate


def register(request: HttpRequest) -> JsonResponse:
    """Create the user and enqueue its registration update: both commit, or neither."""
    email = request.POST["email"]
    with transaction.atomic():
        user = User.objects.create_user(email, email=email, password=request.POST["password"])
        enqueue(
            RegistrationUpdate(
                timestamp=datetime.now(UTC),
                registration=Registration(success=True, username=email),
                customer=Customer(customer_id=user.pk, email=email),
            ),
            dedup_key=f"registration-{request.headers['X-Request-Id']}",
        )
    return JsonResponse({"id": user.pk}, status=201)
