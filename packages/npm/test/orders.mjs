// What the package tests share: their policy, the order events they seal and the fields
// the policy seals in them, and JSON Pointer access to those fields. No tests here.

import { readFileSync } from 'node:fs';

export const POLICY = JSON.parse(readFileSync(new URL('policy.json', import.meta.url), 'utf8'));
export const SEALED = ['/data/card/number', '/data/customer/email', '/data/customer/phone'];

/** Order event `n`: a card number, an email and a phone to seal, the rest left as it is. */
export function order(n) {
  return {
    specversion: '1.0',
    id: `evt-${n}`,
    type: 'com.example.order.created',
    data: {
      order_id: `o-${n}`,
      amount: 129.5,
      card: { number: `4111 1111 1111 ${String(n).padStart(4, '0')}`, expiry: '12/29' },
      customer: { email: `customer-${n}@example.org`, phone: `+41 79 555 ${String(n).padStart(4, '0')}`, name: 'Ada' },
    },
  };
}

export const pointerGet = (doc, pointer) => pointer.split('/').slice(1).reduce((node, token) => node[token], doc);
export const pointerSet = (doc, pointer, value) => {
  const tokens = pointer.split('/').slice(1);
  const last = tokens.pop();
  tokens.reduce((node, token) => node[token], doc)[last] = value;
};
