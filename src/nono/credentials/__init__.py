"""Credential protection: phantom tokens in the sandbox, real secrets only in the proxy.

Integration contract (for ``nono run`` and the Python API; see docs/credentials.md)::

    from nono.credentials import session
    plan = session.prepare(
        services=["openai", "github=env://GH_PAT"],      # --credential / --proxy-credential,
                                                          #   profile network.credentials
        custom=profile_custom_credentials,                # network.custom_credentials (dict)
        endpoint_rules=["github:GET:/repos/acme/**"],     # --allow-endpoint
        env_credentials=["openai"],                       # --env-credential (real value in env)
    )                                                     # raises CredentialError (a NonoError)
    settings = ProxySettings(allow=[*allow, *plan.allow_hosts], routes=plan.routes,
                             intercept=True, ...)         # TLS interception on the routes' hosts
    handle = nono.proxy.process.start(settings)           # the proxy process gets the secrets
    # with interception: handle.ca_bundle needs a read rule (NetworkSession.grant(plan))
    plan.wipe()                                           # optional: drop them from the supervisor
    env = {k: v for k, v in env.items() if k not in plan.unset_env}
    env.update(handle.env()); env.update(plan.child_env(handle.port))
    print("\\n".join(plan.describe()))                    # --dry-run (no secrets, no phantoms)
    message = plan.redact(message)                         # before anything is logged (until wipe)

* Any credential turns on the filtered network (the proxy must run).
* ``plan.child_env(port)`` sets, per route, ``<NAME>_BASE_URL`` and the service's own
  base-URL variables (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ``GOOGLE_GEMINI_BASE_URL``,
  ...) to ``http://127.0.0.1:<port>/<name>``, and its key variables (``OPENAI_API_KEY``,
  ``GITHUB_TOKEN``/``GH_TOKEN``, ...) to the phantom token.
* ``plan.unset_env``: variables the secrets were read from (``env://``); remove them from
  the child's environment.
* ``nono credential set|list|remove NAME``: :func:`nono.cli.credential.cmd_credential`.

Modules: :mod:`.route` (the data the proxy gets; :class:`~.route.CredentialError`),
:mod:`.services` (built-in data, custom routes, ``--allow-endpoint``), :mod:`.sources`
(keyring, ``env://``, ``file://``, ``op://``), :mod:`.phantom` (token shapes),
:mod:`.session` (``prepare``). Nothing heavy is imported until used (``keyring`` only
for keyring sources).
"""

from .route import CredentialError

__all__ = ["CredentialError"]
