"""SMS/USSD gateway that brings a commune's online public services to basic phones."""
