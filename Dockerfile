# learnloop: one image for every service (api, join, learner, the topic job).
# docker-compose.yml picks the command; `docker run IMAGE --help` lists them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/learnloop

# Only what the package needs: no virtualenv, data directory or tests from the host.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY learnloop ./learnloop
COPY app ./app
COPY join_service ./join_service
COPY online_learner ./online_learner
COPY offline_learner ./offline_learner
RUN pip install . && rm -rf build

RUN useradd --create-home --uid 10001 learnloop \
    && mkdir -p /var/lib/learnloop \
    && chown learnloop /var/lib/learnloop
USER learnloop
ENV LEARNLOOP_DATA_DIR=/var/lib/learnloop

EXPOSE 8000
ENTRYPOINT ["learnloop"]
CMD ["serve", "--backend", "kafka", "--host", "0.0.0.0"]
