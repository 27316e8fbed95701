# syntax=docker/dockerfile:1
#
# One image for every Trainyard process; docker-compose.yml picks the command:
#   trainyard db upgrade      the one-shot migration
#   trainyard api ...         the API under gunicorn (the default command below)
#   trainyard worker          a Celery worker that trains runs
#
# Build: docker build -t trainyard .   (docker compose up --build does it for you)

FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project from the build context (see .dockerignore), installed as a package without its dev extras.
# The sources are bind-mounted for this step only, so they do not stay behind as a layer of their own.
RUN --mount=type=bind,target=/src,rw \
    pip install /src

# Processes run as an unprivileged user; its home is the working directory (and the default data folder).
RUN useradd --create-home --uid 10001 --user-group trainyard
USER trainyard
WORKDIR /home/trainyard

EXPOSE 8000

CMD ["trainyard", "api", "--host", "0.0.0.0", "--port", "8000"]
