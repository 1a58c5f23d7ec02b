"""The covering index's INCLUDE columns leave the model state: PostgreSQL keeps the index 0010 made
(covering), other databases never had those columns (they ignore INCLUDE), and no check warns."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("observers_app", "0018_exact_json"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="observer", name="observer_var_id_id_covering"),
                migrations.AddIndex(
                    model_name="observer",
                    index=models.Index(fields=["var_id", "id"], name="observer_var_id_id_covering"),
                ),
            ],
            database_operations=[],
        ),
    ]
