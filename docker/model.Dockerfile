# A model image: the paddock image with one model's weights baked in, at a
# fixed path (the image's model store, /var/lib/paddock/models), and the
# runtime's arguments in its command: `docker run` of it serves the model
# with no mount and nothing downloaded. Built by
# `paddock image build --model NAME`.
ARG BASE
FROM ${BASE}

ARG MODEL
ARG MODEL_SHA256
ARG MODEL_SIZE
ARG VERSION=dev
LABEL org.opencontainers.image.title="paddock-model ${MODEL}" \
      org.opencontainers.image.description="paddock runtime serving ${MODEL}" \
      org.opencontainers.image.version="${VERSION}" \
      paddock.model.name="${MODEL}" \
      paddock.model.sha256="${MODEL_SHA256}" \
      paddock.model.size="${MODEL_SIZE}"

COPY --chown=10001:10001 models/ /var/lib/paddock/models/
ENV PADDOCK_MODEL="${MODEL}"
CMD ["runtime"]
