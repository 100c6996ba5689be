"""PII protection for the gateway (issue 6): screening before any provider call, stable
pseudonyms restored in answers (also in streams), an output firewall for streamed answers,
and a PII decision recorded per request — counts and types, never values.

    policy.py       parse/validate `pii_policy`, project defaults and guardrail rules
    checksums.py    the EU identifiers' checksums (SE, DE, IT, ES, FR, IBAN, cards): plain functions
    recognizers.py  Presidio recognizers wrapping those checksums
    engine.py       PiiScreener: Presidio + spaCy loaded once, screen(body, policy) off-loop
    pseudonymize.py Pseudonymizer: (type, value) -> <TYPE_n>, in memory, purged per request
    rehydrate.py    rehydrate_text / rehydrate_chat_completion / StreamRehydrator
    firewall.py     StreamFirewall: blocked types in a streamed answer, bounded hold-back
    streaming.py    PiiStreamFilter: firewall then rehydration, per chunk
    service.py      PiiService: one shared screener per process + per-project policies
    evaluate.py     python -m gateway.pii.evaluate — precision/recall per type on the corpus

    stream.py       PiiChunkFilter on streamed chat chunks; answer_violation on whole answers

The lifecycle calls `screen_request_pii` (gateway/lifecycle/admission.py) before admission,
`PiiChunkFilter` on streams (gateway/lifecycle/stream.py) and `answer_violation` on whole
answers (gateway/lifecycle/chat.py); see those for the wiring.
"""
