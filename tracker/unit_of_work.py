"""The unit of work owns the transaction: it rolls back unless ``commit()`` is called.

Web requests, worker jobs and CLI commands all use it, so no job needs a Flask context.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker


class UnitOfWork:
    def __init__(
        self, session_factory: sessionmaker[Session], *, bind: Connection | None = None
    ) -> None:
        # ``bind``: an idle connection to run on (the web request's); the session begins,
        # commits or rolls back its own transaction on it and leaves it open.
        self._factory = session_factory
        self._bind = bind
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its 'with' block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = self._factory() if self._bind is None else self._factory(bind=self._bind)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            session.rollback()
        finally:
            session.close()
            self._session = None

    def commit(self) -> None:
        self.session.commit()

    def flush(self) -> None:
        self.session.flush()
