"""observers: a Django + Celery notification hub that fans variable changes out to observers."""
