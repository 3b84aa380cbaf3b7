// Sign-in: the API key is sent once (POST /session) and forgotten; the session cookie is the server's.
import { useState } from "preact/hooks";
import { ApiError, signIn, type Session } from "../api";

export function SignIn({ onSignedIn, problem }: { onSignedIn: (s: Session) => void; problem: string | null }) {
  const [error, setError] = useState<string | null>(problem);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const input = form.elements.namedItem("api_key") as HTMLInputElement;
    const key = input.value.trim();
    if (!key) {
      setError("Enter the API key.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const session = await signIn(key);
      input.value = ""; // the key is not kept, not even in the field
      if (session) onSignedIn(session);
      else setError("Signed in, but the session was not kept: are cookies blocked for this site?");
    } catch (e) {
      setError(e instanceof ApiError && e.status === 401 ? "That API key is not valid." : `Could not sign in: ${(e as Error).message}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="signin">
      <h1>pixelpipe</h1>
      <p>Sign in with one of your account's API keys (the key <code>pixelpipe serve</code> printed at start, or one of
        <code> PIXELPIPE_API_KEYS</code>).</p>
      <form onSubmit={submit} aria-describedby={error ? "signin-error" : undefined}>
        <label for="api_key">API key</label>
        <input id="api_key" name="api_key" type="password" autoComplete="off" spellcheck={false} required />
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {error && (
          <p id="signin-error" class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
