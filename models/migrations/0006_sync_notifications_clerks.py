"""Issue 9 and 10: one-stop sync (client agencies, events), notification history, postal
requests; clerks, their agencies, console sessions, API tokens and the audit log."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.entities import DossierStatus, SmsKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_otp_one_live_code')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiClientAgency',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('api_client', fields.ForeignKeyField('models.ApiClient', source_field='api_client_id', db_constraint=True, to_field='id', related_name='agencies', on_delete=OnDelete.CASCADE)),
                ('agency', fields.ForeignKeyField('models.Agency', source_field='agency_id', db_constraint=True, to_field='id', related_name='api_clients', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'api_client_agency', 'app': 'models', 'unique_together': (('api_client', 'agency'),), 'pk_attr': 'id', 'table_description': 'An agency whose dossiers an API client (a one-stop system) may create and change.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuditLog',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('clerk_id', fields.BigIntField(null=True)),
                ('actor', fields.CharField(max_length=40)),
                ('channel', fields.CharField(max_length=8)),
                ('action', fields.CharField(max_length=40)),
                ('target', fields.CharField(default='', max_length=80)),
                ('detail', fields.CharField(default='', max_length=300)),
            ],
            options={'table': 'audit_log', 'app': 'models', 'indexes': [Index(fields=['at']), Index(fields=['clerk_id', 'at'])], 'pk_attr': 'id', 'table_description': "Who did what, when, from which channel. Never a citizen's phone or ID in clear:"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Clerk',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('login', fields.CharField(unique=True, max_length=40)),
                ('name', fields.CharField(max_length=80)),
                ('phone', fields.CharField(null=True, max_length=16)),
                ('phone_key', fields.CharField(null=True, unique=True, max_length=64)),
                ('role', fields.CharField(default='clerk', max_length=8)),
                ('password_hash', fields.CharField(max_length=200)),
                ('must_change_password', fields.BooleanField(default=True)),
                ('failed_logins', fields.IntField(default=0)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'clerk', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A clerk of one or more agencies, or an admin (role). The password as a slow hash.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ClerkAgency',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('clerk', fields.ForeignKeyField('models.Clerk', source_field='clerk_id', db_constraint=True, to_field='id', related_name='agencies', on_delete=OnDelete.CASCADE)),
                ('agency', fields.ForeignKeyField('models.Agency', source_field='agency_id', db_constraint=True, to_field='id', related_name='clerks', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'clerk_agency', 'app': 'models', 'unique_together': (('clerk', 'agency'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ClerkSession',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('clerk', fields.ForeignKeyField('models.Clerk', source_field='clerk_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('sid_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended', fields.BooleanField(default=False)),
            ],
            options={'table': 'clerk_session', 'app': 'models', 'indexes': [Index(fields=['last_seen_at'])], 'pk_attr': 'id', 'table_description': 'A console login: the cookie carries the session id, only its hash is kept, so logout'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ClerkToken',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('clerk', fields.ForeignKeyField('models.Clerk', source_field='clerk_id', db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('token_prefix', fields.CharField(max_length=12)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked', fields.BooleanField(default=False)),
            ],
            options={'table': 'clerk_token', 'app': 'models', 'pk_attr': 'id', 'table_description': "A clerk's bearer token for /api/v1, shown once: only its SHA-256 is kept."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DossierEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('api_client_id', fields.BigIntField()),
                ('event_id', fields.CharField(max_length=64)),
                ('dossier', fields.ForeignKeyField('models.Dossier', source_field='dossier_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('status', fields.IntEnumField(description='FILED: 1\nRECEIVED: 2\nREFUSED: 3\nPROCESSING: 4\nNEEDS_DOCUMENTS: 5\nNEEDS_PAYMENT: 6\nWITHDRAWN: 7\nSTOPPED: 8\nREADY: 9\nDELIVERED: 10', enum_type=DossierStatus, generated=False)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('outcome', fields.CharField(max_length=12)),
            ],
            options={'table': 'dossier_event', 'app': 'models', 'unique_together': (('api_client_id', 'event_id'),), 'pk_attr': 'id', 'table_description': 'A status change a one-stop system pushed, by its own event id: a replay is a no-op'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DossierNotification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dossier', fields.ForeignKeyField('models.Dossier', source_field='dossier_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='OTP: otp\nREPLY: reply\nSTATUS: status\nPICKUP: pickup\nREMINDER: reminder\nINFO: info', enum_type=SmsKind, max_length=16)),
                ('status', fields.IntEnumField(description='FILED: 1\nRECEIVED: 2\nREFUSED: 3\nPROCESSING: 4\nNEEDS_DOCUMENTS: 5\nNEEDS_PAYMENT: 6\nWITHDRAWN: 7\nSTOPPED: 8\nREADY: 9\nDELIVERED: 10', enum_type=DossierStatus, generated=False)),
                ('outbound_sms_id', fields.BigIntField(null=True)),
                ('skipped', fields.CharField(default='', max_length=120)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'dossier_notification', 'app': 'models', 'indexes': [Index(fields=['dossier_id', 'created_at']), Index(fields=['outbound_sms_id'])], 'pk_attr': 'id', 'table_description': 'An SMS the gateway meant to send the applicant about a dossier: the outbox row it'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PostalRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dossier', fields.OneToOneField('models.Dossier', source_field='dossier_id', db_constraint=True, to_field='id', related_name='postal_request', on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharField(max_length=8)),
                ('status', fields.CharField(default='waiting', max_length=12)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('handled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'postal_request', 'app': 'models', 'indexes': [Index(fields=['status', 'requested_at'])], 'pk_attr': 'id', 'table_description': 'An applicant asked (BUUDIEN <code>) for a "toan trinh" result by post.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Dossier',
            name='reminders_sent',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Dossier',
            name='state_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
