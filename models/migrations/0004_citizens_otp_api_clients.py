from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_fingerprints_leases_retention')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiClient',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=80)),
                ('key_prefix', fields.CharField(max_length=12)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('scopes', fields.CharField(max_length=200)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_client', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A system allowed to call /api/v1 (the provincial portal, a one-stop system).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Citizen',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('phone_key', fields.CharField(unique=True, max_length=64)),
                ('id_hash', fields.CharField(db_index=True, max_length=64)),
                ('id_last3', fields.CharField(max_length=3)),
                ('name', fields.CharField(max_length=60)),
                ('lang', fields.CharField(default='vi', max_length=2)),
                ('pin_hash', fields.CharField(null=True, max_length=200)),
                ('pin_failures', fields.IntField(default=0)),
                ('pin_locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('registered_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'citizen', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A registered citizen. Only what the service needs: the phone as a keyed hash (every'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DeletionAudit',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('deleted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('channel', fields.CharField(max_length=8)),
                ('removed', fields.CharField(max_length=200)),
            ],
            options={'table': 'deletion_audit', 'app': 'models', 'pk_attr': 'id', 'table_description': "That a citizen's data was deleted on request, and when and how: nothing that says who."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OtpChallenge',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.CharField(unique=True, max_length=40)),
                ('phone_key', fields.CharField(max_length=64)),
                ('purpose', fields.CharField(max_length=24)),
                ('code_hash', fields.CharField(max_length=64)),
                ('status', fields.CharField(default='pending', max_length=12)),
                ('checks', fields.IntField(default=0)),
                ('api_client_id', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('resend_after', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'otp_challenge', 'app': 'models', 'indexes': [Index(fields=['phone_key', 'purpose', 'status']), Index(fields=['created_at'])], 'pk_attr': 'id', 'table_description': 'One OTP sent to a phone for one purpose. The code is kept only as a keyed hash.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RateCounter',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('scope', fields.CharField(max_length=100)),
                ('window_start', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('count', fields.IntField(default=0)),
            ],
            options={'table': 'rate_counter', 'app': 'models', 'unique_together': (('scope', 'window_start'),), 'indexes': [Index(fields=['window_start'])], 'pk_attr': 'id', 'table_description': 'A count of events in one fixed window (OTPs per phone per hour, per minute overall),'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SmsRegistration',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('phone_key', fields.CharField(unique=True, max_length=64)),
                ('id_hash', fields.CharField(max_length=64)),
                ('id_last3', fields.CharField(max_length=3)),
                ('name', fields.CharField(max_length=60)),
                ('lang', fields.CharField(default='vi', max_length=2)),
                ('stage', fields.CharField(max_length=12)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sms_registration', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A registration started by SMS (DK ...), waiting for consent (DONG Y) and then the OTP.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Dossier',
            name='applicant_id_hash',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddIndex(
            model_name='Dossier',
            index=Index(fields=['applicant_id_hash']),
        ),
    ]
