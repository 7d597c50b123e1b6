"""The domain services, configured from settings, for everything that changes data.

One ``Services`` per process (the app's, the CLI's): USSD hops, SMS keywords and, later,
the APIs and the clerks' console apply their effects through it, inside their own unit
of work. A feature that brings effects registers their handlers here.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.outbox import Outbox
from gateway.phones import normalize_msisdn, phone_key
from gateway.settings import Settings
from menus.notices import Notices
from menus.texts import T, text
from models.directory import DatabaseDirectory
from models.dossiers import DossierService
from models.citizens import CitizenService
from models.clerks import ClerkService
from models.otp import OtpPurpose, OtpService
from models.sms_text import Policy
from models.unit_of_work import Services

_PURPOSE_TEXT = {
    OtpPurpose.REGISTER: T.OTP_FOR_REGISTER,
    OtpPurpose.PIN_RESET: T.OTP_FOR_PIN_RESET,
    OtpPurpose.DELETE_DATA: T.OTP_FOR_DELETE_DATA,
    OtpPurpose.PORTAL: T.OTP_FOR_PORTAL,
}
assert set(_PURPOSE_TEXT) == set(OtpPurpose), "every OTP purpose needs its words in the SMS"


def otp_sms_text(lang: str, purpose: OtpPurpose, code: str, minutes: int) -> str:
    return text(lang, T.OTP_SMS, code=code, purpose=text(lang, _PURPOSE_TEXT[purpose]), minutes=minutes)


def derived_key(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def build_services(settings: Settings, outbox: Outbox, directory: DatabaseDirectory) -> Services:
    secret = settings.security.secret_key
    id_key = settings.security.id_key or secret

    def key_of(phone: str) -> str:
        return phone_key(phone, secret)

    services = Services(outbox.writer, key_of, on_sms_queued=outbox.wakeup.set)
    # The ID key may be shared with the one-stop system (its dossiers' ID hashes must match
    # ours), so it keys ID numbers only: OTP codes and mid-dialogue entries get keys of
    # their own, derived from the secret key.
    services.otp = OtpService(settings.otp, outbox.writer, derived_key(secret, "otp-codes"), key_of, otp_sms_text)
    services.citizens = CitizenService(settings.pin, id_key, key_of, entry_key=derived_key(secret, "dialogue-entries"))
    services.clerks = ClerkService(settings.console, key_of, normalize_msisdn, scrypt_n=settings.pin.scrypt_n,
                                   scrypt_r=settings.pin.scrypt_r, scrypt_p=settings.pin.scrypt_p)
    notices = Notices(settings.locale.timezone, Policy(settings.sms.encoding_policy))
    services.dossiers = DossierService(
        outbox.writer, directory, settings.notifications, notices,
        valid_phone=lambda phone: normalize_msisdn(phone) == phone,
        default_lang=settings.ussd.default_language,
    )
    from models.desk_actions import DeskActions

    services.desk = DeskActions(services.dossiers, outbox.writer)
    services.check()
    return services
