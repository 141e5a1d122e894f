// A real OpenID provider for the browser tests: npm's oidc-provider on 127.0.0.1 with one
// confidential client and its dev login page (any login, any password; the login is the email).
// Usage: node idp.mjs <port> <redirect_uri>[,<redirect_uri>…]
// Prints `ready <issuer>` on stdout once it listens.
import Provider from 'oidc-provider';

const [port, redirects] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'portcullis',
    client_secret: 'browser-test-client-secret',
    redirect_uris: redirects.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // The login typed on the dev page becomes the account's email (and `sub`).
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, name: `Test ${id.split('@')[0]}`, groups: ['testers'] };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  // Put email and name in the ID token: the sidecar reads the ID token, not userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['browser-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
