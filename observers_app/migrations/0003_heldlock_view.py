"""The view behind HeldLock: owner advisory locks held in this database right now."""

from django.db import migrations

NAMESPACE = 0x0B5E

POSTGRESQL = f"""
CREATE VIEW observers_app_heldlock AS
SELECT l.objid::bigint::integer AS lock_key
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = {NAMESPACE}
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# SQLite has no server-held locks: process owners there live by heartbeat, so the view is empty.
SQLITE = "CREATE VIEW observers_app_heldlock AS SELECT CAST(NULL AS INTEGER) AS lock_key WHERE 0"


def create_view(apps, schema_editor):
    sql = POSTGRESQL if schema_editor.connection.vendor == "postgresql" else SQLITE
    schema_editor.execute(sql)


def drop_view(apps, schema_editor):
    schema_editor.execute("DROP VIEW observers_app_heldlock")


class Migration(migrations.Migration):
    dependencies = [("observers_app", "0002_owners")]

    operations = [migrations.RunPython(create_view, drop_view)]
