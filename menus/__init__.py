"""USSD menu trees and (later) SMS keyword commands: declarative screens, pure steps, text catalogues."""
