from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from digest.health import run_health_checks


@never_cache
@require_GET
def healthz(request):
    results = run_health_checks()
    failing = sorted(name for name, state in results.items() if state != "ok")
    body = {"status": "error" if failing else "ok", "failing": failing, "services": results}
    return JsonResponse(body, status=503 if failing else 200)
