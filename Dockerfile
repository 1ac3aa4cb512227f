# course-signup API image: a wheel built with the pinned constraints, run as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir -c constraints.txt -w /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/prod.yml /etc/course-signup/prod.yml
USER app
WORKDIR /home/app
ENV COURSE_SIGNUP_CONFIG=/etc/course-signup/prod.yml \
    COURSE_SIGNUP_HOST=0.0.0.0 \
    COURSE_SIGNUP_DATA_DIR=/home/app/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["course-signup", "serve"]
