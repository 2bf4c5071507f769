// What both HTTP doors (kiln's API and the Docker Engine API) need of a request.

import type { FastifyReply, FastifyRequest } from 'fastify';

/** Aborts when the client goes away before its response is complete (the build's cancel). */
export function disconnectSignal(req: FastifyRequest, reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ac.abort(new Error('the client disconnected'));
  };
  reply.raw.once('close', onClose);
  req.raw.once('aborted', onClose);
  return ac.signal;
}

/** A body handed on as a stream (a tar), not parsed. */
export function isStream(v: unknown): v is NodeJS.ReadableStream {
  return typeof v === 'object' && v !== null && typeof (v as NodeJS.ReadableStream).pipe === 'function';
}
