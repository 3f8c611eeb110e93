"""The reference carrier app (一证通查 / 一键解绑): ``python -m clients.carrier_app``."""

from clients.carrier_app.app import AppSettings, create_app, load_secret

__all__ = ["AppSettings", "create_app", "load_secret"]
