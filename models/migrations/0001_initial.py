from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.entities import DossierStatus, FilingMode
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Agency',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=40)),
                ('name', fields.CharField(max_length=200)),
                ('address', fields.CharField(max_length=300)),
                ('desk_hours', fields.CharField(max_length=200)),
                ('desk_hours_en', fields.CharField(max_length=200)),
                ('hotline', fields.CharField(max_length=20)),
                ('service_code', fields.CharField(null=True, unique=True, max_length=32)),
            ],
            options={'table': 'agency', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Procedure',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('agency', fields.ForeignKeyField('models.Agency', source_field='agency_id', db_constraint=True, to_field='id', related_name='procedures', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(max_length=40)),
                ('position', fields.IntField(default=0)),
                ('name', fields.CharField(max_length=200)),
                ('name_en', fields.CharField(max_length=200)),
                ('processing_time', fields.CharField(max_length=200)),
                ('processing_time_en', fields.CharField(max_length=200)),
                ('fee', fields.CharField(max_length=300)),
                ('fee_en', fields.CharField(max_length=300)),
                ('documents', fields.TextField(unique=False)),
                ('documents_en', fields.TextField(unique=False)),
            ],
            options={'table': 'procedure', 'app': 'models', 'unique_together': (('agency', 'code'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Dossier',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=64)),
                ('tail', fields.CharField(db_index=True, max_length=24)),
                ('agency', fields.ForeignKeyField('models.Agency', source_field='agency_id', db_constraint=True, to_field='id', related_name='dossiers', on_delete=OnDelete.RESTRICT)),
                ('procedure', fields.ForeignKeyField('models.Procedure', source_field='procedure_id', db_constraint=True, to_field='id', related_name='dossiers', on_delete=OnDelete.RESTRICT)),
                ('applicant_name', fields.CharField(max_length=120)),
                ('applicant_phone', fields.CharField(db_index=True, max_length=16)),
                ('status', fields.IntEnumField(description='FILED: 1\nRECEIVED: 2\nREFUSED: 3\nPROCESSING: 4\nNEEDS_DOCUMENTS: 5\nNEEDS_PAYMENT: 6\nWITHDRAWN: 7\nSTOPPED: 8\nREADY: 9\nDELIVERED: 10', enum_type=DossierStatus, generated=False)),
                ('status_note', fields.CharField(default='', max_length=300)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('due_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('fee_due', fields.IntField(default=0)),
                ('pickup_place', fields.CharField(default='', max_length=300)),
                ('mode', fields.CharEnumField(default=FilingMode.PARTIAL, description='PARTIAL: mot_phan\nFULL: toan_trinh', enum_type=FilingMode, max_length=16)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'dossier', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DossierStatusChange',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dossier', fields.ForeignKeyField('models.Dossier', source_field='dossier_id', db_constraint=True, to_field='id', related_name='status_changes', on_delete=OnDelete.CASCADE)),
                ('old_status', fields.IntEnumField(null=True, description='FILED: 1\nRECEIVED: 2\nREFUSED: 3\nPROCESSING: 4\nNEEDS_DOCUMENTS: 5\nNEEDS_PAYMENT: 6\nWITHDRAWN: 7\nSTOPPED: 8\nREADY: 9\nDELIVERED: 10', enum_type=DossierStatus, generated=False)),
                ('new_status', fields.IntEnumField(description='FILED: 1\nRECEIVED: 2\nREFUSED: 3\nPROCESSING: 4\nNEEDS_DOCUMENTS: 5\nNEEDS_PAYMENT: 6\nWITHDRAWN: 7\nSTOPPED: 8\nREADY: 9\nDELIVERED: 10', enum_type=DossierStatus, generated=False)),
                ('note', fields.CharField(default='', max_length=300)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('source', fields.CharField(default='', max_length=40)),
            ],
            options={'table': 'dossier_status_change', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UssdSession',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.CharField(max_length=16)),
                ('external_id', fields.CharField(max_length=128)),
                ('phone_key', fields.CharField(db_index=True, max_length=64)),
                ('state', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('hops', fields.IntField(default=0)),
                ('last_request', fields.TextField(default='', unique=False)),
                ('last_reply', fields.TextField(default='', unique=False)),
                ('ended', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'ussd_session', 'app': 'models', 'unique_together': (('channel', 'external_id'),), 'pk_attr': 'id', 'table_description': 'One USSD dialogue. Shared through the database so any worker can serve any hop.'},
            bases=['Model'],
        ),
    ]
