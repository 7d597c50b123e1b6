"""English, for citizens and visitors who ask for it."""

from menus.texts import T

TEXTS = {
    T.MAIN_TITLE: "Public services {agency}",
    T.MAIN_LOOKUP: "Track a dossier",
    T.MAIN_REGISTER: "Register",
    T.MAIN_MY_DOSSIERS: "My dossiers",
    T.MAIN_PROCEDURES: "Procedures",
    T.MAIN_PICKUP: "Collect results",
    T.MAIN_HELP: "Help",
    T.MAIN_LANGUAGE: "Tieng Viet",
    T.NAV_PREV: "8 Prev",
    T.NAV_NEXT: "9 Next",
    T.NAV_BACK: "0 Back",
    T.NAV_HOME: "00 Home",
    T.INVALID_CHOICE: "Invalid choice.",
    T.GOODBYE: "Thank you for using public services.",
    T.SORRY_ERROR: "Sorry, the service has a problem. Please dial again in a few minutes.",
    T.SESSION_EXPIRED: "Your session has expired. Please dial again.",
    T.SORRY_TOO_LONG: "Sorry, that request was too long or had too many steps at once. Please dial again.",
    T.SMS_CUT: " (message shortened)",
    T.RESUME_TITLE: "You stopped half way.",
    T.RESUME_CONTINUE: "Continue",
    T.RESUME_RESTART: "Start over",
    T.LOOKUP_PROMPT: "Enter the dossier code, or its last 10 digits (date YYMMDD + number), e.g. 2605140001:",
    T.LOOKUP_BAD_CODE: "Invalid code. Enter the dossier code or its last 10 digits:",
    T.LOOKUP_NOT_FOUND: "Dossier {code} not found. Try again:",
    T.LOOKUP_NEED_FULL_CODE: "Please enter the full dossier code, e.g. 000.17.22.H56-210531-0001:",
    T.LOOKUP_CHOOSE_TITLE: "{count} dossiers match. Choose:",
    T.LOOKUP_CHOOSE_ITEM: "{agency_code} {procedure}",
    T.RESULT_CODE: "Dossier {code}",
    T.RESULT_STATUS: "Status: {status}.",
    T.RESULT_APPLICANT: "Applicant: {name}.",
    T.RESULT_DUE: "Due: {date}.",
    T.RESULT_OVERDUE: "Overdue by {days} days.",
    T.RESULT_REASON: "Reason: {reason}.",
    T.RESULT_CALL: "Hotline {hotline}.",
    T.RESULT_MISSING_DOCS: "Please add: {documents}. Bring them to {place}.",
    T.RESULT_MISSING_DOCS_PUBLIC: "Ask the one-stop desk which documents are missing.",
    T.RESULT_FEE: "Amount to pay: {amount}.",
    T.RESULT_PICKUP: "Collect at {place}, hours {hours}. Bring the appointment slip and your ID card.",
    T.RESULT_PICKUP_FEE: "Fee at pickup: {amount}.",
    T.RESULT_DELIVERY_FULL: "The result is sent by post or online as you chose.",
    T.RESULT_PRIVATE_HINT: "Call from the applicant's phone to see details.",
    T.STATUS_1: "Filed, waiting to be received",
    T.STATUS_2: "Received",
    T.STATUS_3: "Refused",
    T.STATUS_4: "Being processed",
    T.STATUS_5: "Documents missing",
    T.STATUS_6: "Fee to pay",
    T.STATUS_7: "Withdrawn at your request",
    T.STATUS_8: "Processing stopped",
    T.STATUS_9: "Result ready for pickup",
    T.STATUS_10: "Result collected",
    T.FEE_FREE: "free",
    T.FEE_AMOUNT: "{amount} VND",
    T.PROCEDURES_TITLE: "Procedures:",
    T.PROCEDURES_EMPTY: "No procedures yet.",
    T.PROCEDURE_DETAIL: "{name}. Time: {time}. Fee: {fee}. Documents: {documents}.",
    T.PICKUP_INFO: (
        "Collect results at {address}. Opening hours: {hours}. Bring the appointment slip "
        "and your ID card, and pay any fee. Hotline {hotline}."
    ),
    T.HELP_INFO: (
        "Hotline {hotline}. Opening hours: {hours}. SMS: HS <dossier code> to track; "
        "TT <procedure> for a procedure; TG for help; HUY to stop alerts."
    ),
    T.COMING_SOON: (
        "Coming soon. For now, register on the public services portal "
        "or at the one-stop desk. Hotline {hotline}."
    ),
    T.SMS_HELP: (
        "Public services {agency}: STATUS <dossier code> to track; INFO <procedure>; "
        "STOP to stop alerts, START to resume. Hotline {hotline}."
    ),
    T.SMS_UNKNOWN: "Message not understood. Send STATUS <dossier code> to track, INFO <procedure>, HELP for help.",
    T.SMS_STATUS_NEED_CODE: "Send STATUS <dossier code>, e.g. STATUS 000.17.22.H56-210531-0001 or STATUS 2105310001.",
    T.SMS_NOT_FOUND: "Dossier {code} not found. Check the code on your appointment slip or call {hotline}.",
    T.SMS_SEVERAL: "{count} dossiers match {tail}. Send STATUS with the full code, e.g. STATUS {example}.",
    T.SMS_NEED_FULL_CODE: "Send STATUS with the full dossier code, e.g. STATUS 000.17.22.H56-210531-0001.",
    T.SMS_PROCEDURE_NEED_NAME: "Send INFO <procedure>, e.g. INFO birth, INFO marriage, INFO temporary residence.",
    T.SMS_PROCEDURE_NOT_FOUND: "No procedure matches {query}. E.g. INFO birth, INFO marriage, INFO temporary residence.",
    T.SMS_OPTED_OUT: "Dossier alerts to this number are stopped. OTP codes and replies still come. Send START to resume.",
    T.OTP_SMS: "OTP {code} to {purpose}, valid for {minutes} minutes. NEVER share this code with anyone, staff included.",
    T.OTP_FOR_REGISTER: "register for public services",
    T.OTP_FOR_PIN_RESET: "reset your public services PIN",
    T.OTP_FOR_DELETE_DATA: "delete your personal data",
    T.OTP_FOR_PORTAL: "verify on the public services portal",
    T.SMS_OPTED_IN: "Dossier alerts to this number are on again. Send STOP to stop them.",
}
