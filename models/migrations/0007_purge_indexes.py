"""Issue 10: the purger deletes sync events and notification records by age: an index for each range."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_sync_notifications_clerks')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='DossierEvent',
            index=Index(fields=['received_at']),
        ),
        ops.AddIndex(
            model_name='DossierNotification',
            index=Index(fields=['created_at']),
        ),
    ]
