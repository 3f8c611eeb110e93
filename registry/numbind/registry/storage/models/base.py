"""The declarative base every table is mapped on, and the column types they share."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import DeclarativeBase

# SQLite only gives INTEGER PRIMARY KEY autoincrement semantics to the INTEGER type.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass
