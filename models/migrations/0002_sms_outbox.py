from tortoise import migrations
from tortoise.migrations import operations as ops
from models.entities import SmsKind, SmsStatus
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InboundSms',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('transport', fields.CharField(max_length=16)),
                ('provider_id', fields.CharField(null=True, max_length=128)),
                ('phone_key', fields.CharField(max_length=64)),
                ('text_digest', fields.CharField(max_length=64)),
                ('keyword', fields.CharField(default='', max_length=16)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbound_sms', 'app': 'models', 'unique_together': (('transport', 'provider_id'),), 'indexes': [Index(fields=['phone_key', 'text_digest', 'received_at'])], 'pk_attr': 'id', 'table_description': 'A message received, kept only to drop duplicates: no number, no text.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboundSms',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('to_phone', fields.CharField(max_length=16)),
                ('text', fields.TextField(unique=False)),
                ('encoding', fields.CharField(max_length=8)),
                ('parts', fields.IntField()),
                ('kind', fields.CharEnumField(description='OTP: otp\nREPLY: reply\nSTATUS: status\nPICKUP: pickup\nREMINDER: reminder\nINFO: info', enum_type=SmsKind, max_length=16)),
                ('urgent', fields.BooleanField(default=False)),
                ('status', fields.CharEnumField(default=SmsStatus.QUEUED, description='QUEUED: queued\nSENDING: sending\nSENT: sent\nDELIVERED: delivered\nFAILED: failed\nEXPIRED: expired', enum_type=SmsStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(null=True, max_length=64)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('transport', fields.CharField(default='', max_length=16)),
                ('provider_id', fields.CharField(null=True, db_index=True, max_length=128)),
                ('last_error', fields.CharField(default='', max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbound_sms', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id', 'table_description': 'The outbox: every SMS the gateway sends, written in the transaction that caused it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PhonePreference',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('phone_key', fields.CharField(unique=True, max_length=64)),
                ('notifications_off', fields.BooleanField(default=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'phone_preference', 'app': 'models', 'pk_attr': 'id', 'table_description': "A phone's choices, keyed by the HMAC of its number: notifications on or off."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Agency',
            name='sms_number',
            field=fields.CharField(null=True, unique=True, max_length=20),
        ),
    ]
