# tradesense-exporter: the sidecar (and, with the same image, the example app).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[sidecar,example]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'tradesense-exporter[sidecar,example]' \
    && rm -rf /wheels
WORKDIR /app
COPY examples ./examples
USER 10001
# OTLP stays on loopback: a sidecar takes pushes from the app in its own pod (or network
# namespace) on 127.0.0.1:4318, the OpenTelemetry SDK's default. To take pushes from other hosts,
# open it with TLS and a token (README, "Securing the OTLP listener"):
#   --otlp.listen-address=0.0.0.0:4318 --otlp.config.file=/etc/tradesense-exporter/otlp.yml
EXPOSE 9121
ENTRYPOINT ["tradesense-exporter"]
CMD ["--web.listen-address=:9121", "--otlp.listen-address=127.0.0.1:4318"]
