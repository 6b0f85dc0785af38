// A duplicate charge is billing, and it blocks the customer (high): the seeds agree on every
// one. Anything else is declined (null) and left to the model.
function recipe(input, lib) {
  const text = String(input).toLowerCase();
  const twice = /\b(charged|billed) (me )?(twice|two times|double)\b|\bdouble[- ]charged?\b|\bduplicate (charge|payment)s?\b/;
  return twice.test(text) ? { label: "billing", severity: "high" } : null;
}
