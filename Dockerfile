# course-signup API image (also runs `course-signup worker` and `migrate`).
# Stage 1 installs the package and its pinned dependencies into a virtual environment; stage 2 is
# the slim runtime with only that environment, run as an unprivileged user.
#   docker build -t course-signup .

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject.toml names README.md (the long description) and LICENSE (license-files): the build needs both.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY src ./src
# A regular (not editable) install: the migrations, templates and static assets go in as package data.
RUN /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11-slim AS runtime
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY config/prod.yml /etc/course-signup/prod.yml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COURSE_SIGNUP_CONFIG=/etc/course-signup/prod.yml \
    COURSE_SIGNUP_HOST=0.0.0.0 \
    COURSE_SIGNUP_PORT=8000 \
    COURSE_SIGNUP_DATA_DIR=/home/app/data
USER 10001:10001
WORKDIR /home/app
EXPOSE 8000
# Liveness of `serve` on the port it listens on. Containers of this image that serve no HTTP
# (worker, migrate) switch it off in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['COURSE_SIGNUP_PORT'], timeout=2)"
CMD ["course-signup", "serve"]
