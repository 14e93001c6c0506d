// oidc-provider ships no types; the embedded provider uses a small part of it.
declare module 'oidc-provider' {
  const Provider: any;
  export default Provider;
  export const interactionPolicy: any;
  export const errors: any;
}
