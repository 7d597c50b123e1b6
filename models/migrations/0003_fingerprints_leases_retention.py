from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_sms_outbox')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InboundFingerprint',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('phone_key', fields.CharField(max_length=64)),
                ('text_digest', fields.CharField(max_length=64)),
                ('seen_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbound_fingerprint', 'app': 'models', 'unique_together': (('phone_key', 'text_digest'),), 'pk_attr': 'id', 'table_description': "The last time a phone's text (normalised) opened an answer: the duplicate window."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Lease',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('holder', fields.CharField(max_length=80)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'lease', 'app': 'models', 'pk_attr': 'name', 'table_description': 'A named job only one process may run at a time (the purger, the dispatcher),'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='InboundSms',
            index=Index(fields=['received_at']),
        ),
        ops.AddIndex(
            model_name='OutboundSms',
            index=Index(fields=['created_at']),
        ),
        ops.AddIndex(
            model_name='UssdSession',
            index=Index(fields=['updated_at']),
        ),
    ]
