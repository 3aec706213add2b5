# tradesense-exporter: the sidecar (and, with the same image, the example app).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[example]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'tradesense-exporter[example]' \
    && rm -rf /wheels
WORKDIR /app
COPY examples ./examples
USER 10001
EXPOSE 9121 4318
ENTRYPOINT ["tradesense-exporter"]
CMD ["--web.listen-address=:9121", "--otlp.listen-address=0.0.0.0:4318"]
