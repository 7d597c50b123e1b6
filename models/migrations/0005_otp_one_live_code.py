"""At most one live (pending) code per phone, purpose and requester, held by the database.

Two starts that race past the resend check (two workers on PostgreSQL) cannot both send a
code: the second insert meets this index (models/otp.py). The requester is the API client,
or 0 for the gateway's own journeys. Tortoise's model indexes cannot carry a WHERE on
SQLite, hence raw SQL, the same on SQLite and PostgreSQL; the models do not declare it.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0004_citizens_otp_api_clients')]

    initial = False

    operations = [
        # Rows made before the rule (none in practice): the newest pending one stays live.
        ops.RunSQL(
            "UPDATE otp_challenge SET status = 'canceled' WHERE status = 'pending' AND id NOT IN ("
            " SELECT MAX(id) FROM otp_challenge WHERE status = 'pending'"
            " GROUP BY phone_key, purpose, COALESCE(api_client_id, 0))",
            reverse_sql="SELECT 1",
        ),
        ops.RunSQL(
            "CREATE UNIQUE INDEX uidx_otp_challenge_one_live ON otp_challenge"
            " (phone_key, purpose, (COALESCE(api_client_id, 0))) WHERE status = 'pending'",
            reverse_sql="DROP INDEX uidx_otp_challenge_one_live",
        ),
    ]
