"""Uploaded CSV datasets; a dataset's ``content`` is deferred and read only when asked for."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from trainyard.service.storage.models import DATASET_TASKS, Dataset, new_id, utcnow
from trainyard.service.storage.repo._common import _choice, _name


def create_dataset(
    *,
    session: Session,
    name: str,
    filename: str,
    content: bytes,
    target: str,
    task: str,
    n_samples: int,
    n_features: int,
    classes: list[Any] | None = None,
    class_counts: list[int] | None = None,
) -> Dataset:
    """Store an uploaded CSV (validated by the caller) with its SHA-256 and size."""
    dataset = Dataset(
        id=new_id(),
        name=_name(name),
        filename=filename,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        target=target,
        task=_choice(task, DATASET_TASKS, "task"),
        n_samples=n_samples,
        n_features=n_features,
        classes=classes,
        class_counts=class_counts,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(*, session: Session, dataset_id: str, with_content: bool = False) -> Dataset | None:
    """The dataset, or None.  Its ``content`` is loaded only with ``with_content=True`` (else reading it raises)."""
    query = select(Dataset).where(Dataset.id == dataset_id)
    if with_content:
        query = query.options(undefer(Dataset.content))
    return session.scalars(query).first()


def list_datasets(*, session: Session) -> list[Dataset]:
    """Every uploaded dataset, newest first, without its content."""
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id.desc())))


def datasets_bytes(*, session: Session) -> int:
    """The bytes every upload takes, together."""
    return session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))) or 0
