// Is a string a valid image reference (docker/distribution's grammar)? The frontend only needs the
// yes/no answer to tell a stage name from an image and to reject bad FROM lines early; parsing and
// normalisation belong to the image room.

const alnum = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const name = `(?:${domain}/)?${pathComponent}(?:/${pathComponent})*`;
const reference = new RegExp(`^${name}(?::${tag})?(?:@${digest})?$`);

export function isValidReference(ref: string): boolean {
  if (ref.length === 0 || ref.length > 4096) return false;
  if (!reference.test(ref)) return false;
  const nameOnly = ref.replace(/@.*$/, '').replace(/:[\w][\w.-]{0,127}$/, '');
  return nameOnly.length <= 255;
}
