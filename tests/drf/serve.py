"""Serve the Ace orders API with Django REST framework on 127.0.0.1; prints ``READY <url>`` once it listens.

    python -m tests.drf.serve DATABASE TOKEN FILTERS MAX_LIMIT

``FILTERS`` picks how django-filter declares the multi-valued filters (``state``, ``pay_way``), the three ways
``APIS.md`` describes: ``plain`` (``filterset_fields``: a CharFilter, a comma list is one literal value, of
repeated keys the last), ``in`` (a BaseInFilter: commas split, of repeated keys the last) or ``choice`` (a
MultipleChoiceFilter: repeated keys OR'd, a comma list answered 400). ``MAX_LIMIT`` is the paginator's silent
clamp of ``limit``. The tables are made on start when missing; the test writes orders into the same file.
"""

from __future__ import annotations

import sys
from typing import Any

import django
from django.conf import settings


def configure(database: str, token: str, filters: str, max_limit: int) -> None:
    """Django's settings for this one-app server (no settings module)."""
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        SECRET_KEY="orderwatch-tests-not-secret",
        ROOT_URLCONF="tests.drf.serve",
        INSTALLED_APPS=["rest_framework", "django_filters", "tests.drf"],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],  # APPEND_SLASH: /orders/<id> answers 301
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database, "OPTIONS": {"timeout": 20}}},
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        REST_FRAMEWORK={
            "UNAUTHENTICATED_USER": None,
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        },
        LOGGING={  # a failing request's traceback on stderr, where the test shows it
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
        },
        ORDERWATCH_TOKEN=token,
        ORDERWATCH_FILTERS=filters,
        ORDERWATCH_MAX_LIMIT=max_limit,
    )
    django.setup()


def _urls() -> list[Any]:
    import django_filters
    from django_filters.rest_framework import DjangoFilterBackend
    from rest_framework import authentication, exceptions, filters, pagination, permissions, routers, serializers
    from rest_framework.viewsets import ReadOnlyModelViewSet

    from tests.drf.models import Order

    class User:
        is_authenticated = True

    class Bearer(authentication.BaseAuthentication):  # type: ignore[misc]
        def authenticate(self, request: Any) -> tuple[User, str]:
            header = request.META.get("HTTP_AUTHORIZATION", "")
            if header != f"Bearer {settings.ORDERWATCH_TOKEN}":
                raise exceptions.AuthenticationFailed("Invalid token.")
            return User(), header

        def authenticate_header(self, request: Any) -> str:
            return "Bearer"

    class Paging(pagination.LimitOffsetPagination):  # type: ignore[misc]
        default_limit = 10
        max_limit = settings.ORDERWATCH_MAX_LIMIT

    class OrderSerializer(serializers.ModelSerializer):  # type: ignore[misc]
        class Meta:
            model = Order
            fields = "__all__"

    states = [(s, s) for s in ("Pending", "Paid", "Finished", "Expired", "Failed", "Refunded")]
    ways = [(w, w) for w in ("WechatPay", "AliPay", "Stripe", "Card", "X402", "PayPal", "AppleIAP", "Reward")]

    class CharInFilter(django_filters.BaseInFilter, django_filters.CharFilter):  # type: ignore[misc]
        pass

    class Filters(django_filters.FilterSet):  # type: ignore[misc]
        if settings.ORDERWATCH_FILTERS == "in":
            state = CharInFilter(field_name="state", lookup_expr="in")
            pay_way = CharInFilter(field_name="pay_way", lookup_expr="in")
        elif settings.ORDERWATCH_FILTERS == "choice":
            state = django_filters.MultipleChoiceFilter(choices=states)
            pay_way = django_filters.MultipleChoiceFilter(choices=ways)
        created_at_from = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
        created_at_to = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

        class Meta:
            model = Order
            fields = ["state", "pay_way", "user_id"] if settings.ORDERWATCH_FILTERS == "plain" else ["user_id"]

    class Orders(ReadOnlyModelViewSet):  # type: ignore[misc]
        queryset = Order.objects.all()
        serializer_class = OrderSerializer
        authentication_classes = (Bearer,)
        permission_classes = (permissions.IsAuthenticated,)
        pagination_class = Paging
        filter_backends = (DjangoFilterBackend, filters.OrderingFilter)
        filterset_class = Filters
        ordering_fields = ("created_at",)

    router = routers.DefaultRouter()
    router.register("api/v1/orders", Orders)
    return list(router.urls)


def __getattr__(name: str) -> Any:
    """``urlpatterns``, built once Django is set up (this module is the ROOT_URLCONF)."""
    if name == "urlpatterns":
        patterns = globals()["urlpatterns"] = _urls()
        return patterns
    raise AttributeError(name)


def main(argv: list[str]) -> None:
    """Make the tables if needed, listen on a free loopback port, say where, and serve until killed."""
    database, token, filters, max_limit = argv
    configure(database, token, filters, int(max_limit))
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, get_internal_wsgi_application

    call_command("migrate", run_syncdb=True, verbosity=0)
    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.daemon_threads = True
    server.set_app(get_internal_wsgi_application())
    print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
