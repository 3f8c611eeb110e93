"""The reference carrier app (一证通查 / 一键解绑): ``python -m numbind.carrier_app``."""

from numbind.carrier_app.app import AppSettings, create_app, load_secret

__all__ = ["AppSettings", "create_app", "load_secret"]
