// Person codes and venue codes in the browser: the command office puts a companion flag on a
// resident and issues their link; the resident opens their code on a phone without an account;
// the market's door staff, on a phone, scans it (the code typed in, as when the camera fails)
// and gets the answer at once; a replay and a forged code are answered too. A resident whose phone
// opened their code link scans a venue poster with it: the visit is registered and answered at once.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VIEWPORTS, startServer, launchBrowser, newPage, login, screenshot, widths, text } from '../lib/harness.mjs';

const phone = VIEWPORTS.find((v) => v.name === 'phone');

/** A JSON API call from a signed-in page (session cookie plus the CSRF header). */
async function api(page, method, path, body) {
  return page.evaluate(
    async ([method, path, body]) => {
      const me = await (await fetch('/api/v1/me')).json();
      const r = await fetch(path, {
        method,
        headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf || '' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: await r.json() };
    },
    [method, path, body],
  );
}

/** A valid resident ID number (GB 11643 check digit). */
function idNumber(first17) {
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...first17].reduce((s, c, i) => s + Number(c) * w[i], 0);
  return first17 + '10X98765432'[sum % 11];
}

describe('person codes and venue codes on phones', () => {
  let server;
  let browser;
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a resident shows their code by link and the market door scans it', async () => {
    const office = await newPage(browser, VIEWPORTS.find((v) => v.name !== 'phone') ?? phone, server.baseURL);
    await login(office.page, 'commander');
    const door = await newPage(browser, phone, server.baseURL);
    await login(door.page, 'venue');
    const staffUnit = (await api(door.page, 'GET', '/api/v1/me')).body.unit_id;

    const p = await api(office.page, 'POST', '/api/v1/persons', { name: '王小红', document_number: idNumber('14042719900101123') });
    assert.ok(p.status === 201 || p.status === 200, JSON.stringify(p));
    const person = p.body.id;
    const flagged = await api(office.page, 'POST', `/api/v1/persons/${person}/controls`, { kind: 'companion' });
    assert.equal(flagged.body.colour, 'yellow', JSON.stringify(flagged));
    const venue = await api(office.page, 'POST', '/api/v1/venues', { name: '龙泉农贸市场东门', kind: 'market', unit_id: staffUnit, division: '140427100' });
    assert.equal(venue.status, 201, JSON.stringify(venue));
    const link = await api(office.page, 'POST', `/api/v1/persons/${person}/code/link`, {});
    assert.equal(link.status, 200, JSON.stringify(link));

    // The office's page for the person: the code, why, and the history.
    await office.page.goto(`/persons/${person}/code`);
    assert.match(await text(office.page, 'main'), /黄码/);
    assert.match(await text(office.page, 'main'), /时空伴随/);

    // The resident, on their own phone, no account.
    const resident = await newPage(browser, phone, server.baseURL);
    await resident.page.goto(link.body.path);
    assert.equal(await resident.page.getAttribute('#person-code', 'data-colour'), 'yellow');
    assert.match(await text(resident.page, '#code-colour'), /黄码/);
    assert.match(await text(resident.page, '#code-reasons'), /时空伴随/);
    assert.match(await text(resident.page, '#person-code'), /王\*\*/);
    assert.doesNotMatch(await text(resident.page, 'body'), /王小红|19900101/, 'no personal data beyond the family name');
    assert.ok(await resident.page.isVisible('#code-qr'));
    const w = await widths(resident.page);
    assert.ok(w.scrollWidth <= w.innerWidth, `no horizontal scroll at ${w.innerWidth}px: ${w.scrollWidth}`);
    await screenshot(resident.page, 'phone-codes-1-resident-code');
    const token = await resident.page.getAttribute('#person-code', 'data-token');
    assert.match(token, /^[A-Za-z0-9_-]{120}$/);

    // The market's door: the code typed in, the answer at once.
    await door.page.goto(`/venues/${venue.body.id}`);
    await door.page.fill('#f-token', token);
    await Promise.all([door.page.waitForLoadState('load'), door.page.click('#scan-submit')]);
    assert.equal(await door.page.getAttribute('#scan-answer', 'data-admission'), 'restricted');
    assert.match(await text(door.page, '#scan-answer'), /限制进入/);
    assert.match(await text(door.page, '#visits'), /王\*\*/);
    const dw = await widths(door.page);
    assert.ok(dw.scrollWidth <= dw.innerWidth, `no horizontal scroll at ${dw.innerWidth}px: ${dw.scrollWidth}`);
    await screenshot(door.page, 'phone-codes-2-door-answer');
    // The same code again: the first answer, marked as a repeat; the log keeps one visit.
    await door.page.fill('#f-token', token);
    await Promise.all([door.page.waitForLoadState('load'), door.page.click('#scan-submit')]);
    assert.match(await text(door.page, '#scan-answer'), /重复扫码/);
    assert.equal(await door.page.locator('#visits tbody tr').count(), 1);
    // A forged code: refused with the reason.
    const forged = token.slice(0, 40) + (token[40] === 'A' ? 'B' : 'A') + token.slice(41);
    await door.page.fill('#f-token', forged);
    await Promise.all([door.page.waitForLoadState('load'), door.page.click('#scan-submit')]);
    assert.match(await text(door.page, '.error-banner'), /签名无效/);
    assert.equal(await door.page.locator('#scan-answer').count(), 0);

    // The printable poster.
    await door.page.goto(`/venues/${venue.body.id}/poster`);
    assert.match(await text(door.page, '#venue-poster'), /红码禁止进入/);

    for (const x of [office, door, resident]) {
      assert.deepEqual(x.problems, []);
    }
  });

  test('a resident scans a venue poster with their own phone', async () => {
    const office = await newPage(browser, VIEWPORTS.find((v) => v.name !== 'phone') ?? phone, server.baseURL);
    await login(office.page, 'commander');
    const p = await api(office.page, 'POST', '/api/v1/persons', { name: '李大明', document_number: idNumber('14042719850315123') });
    assert.ok(p.status === 201 || p.status === 200, JSON.stringify(p));
    const venue = await api(office.page, 'POST', '/api/v1/venues', { name: '太行宾馆大堂', kind: 'hotel', division: '140427100' });
    assert.equal(venue.status, 201, JSON.stringify(venue));
    const link = await api(office.page, 'POST', `/api/v1/persons/${p.body.id}/code/link`, {});
    assert.equal(link.status, 200, JSON.stringify(link));

    // The printed poster's QR holds the venue's public page.
    await office.page.goto(`/venues/${venue.body.id}/poster`);
    const url = new URL(await text(office.page, '#venue-poster code'));
    assert.equal(url.pathname, `/v/${venue.body.id}`);

    // A phone that never opened its code link: open it first, nothing registered.
    const resident = await newPage(browser, phone, server.baseURL);
    await resident.page.goto(url.pathname);
    assert.match(await text(resident.page, '#venue-fallback'), /请先打开发给您的健康码链接/);
    assert.equal(await resident.page.locator('#scan-answer').count(), 0);

    // The resident opens their own code link once; the phone remembers them (no personal data in the cookie).
    await resident.page.goto(link.body.path);
    assert.match(await text(resident.page, '#code-remembered'), /本机已记住您/);
    const [me] = (await resident.context.cookies()).filter((c) => c.name === 'baton_me');
    assert.ok(me && me.httpOnly && me.sameSite === 'Lax' && me.path === '/v', JSON.stringify(me));
    assert.equal(me.value, link.body.link);

    // Scanning the poster now registers the visit and answers at once: green passes.
    await resident.page.goto(url.pathname);
    assert.equal(await resident.page.getAttribute('#scan-answer', 'data-admission'), 'pass');
    assert.match(await text(resident.page, '#scan-answer'), /通行/);
    assert.match(await text(resident.page, '#scan-answer'), /李\*\*/);
    assert.doesNotMatch(await text(resident.page, 'body'), /李大明|19850315/, 'no personal data beyond the family name');
    const w = await widths(resident.page);
    assert.ok(w.scrollWidth <= w.innerWidth, `no horizontal scroll at ${w.innerWidth}px: ${w.scrollWidth}`);
    await screenshot(resident.page, 'phone-codes-3-poster-scan');
    // Scanned again at once: the same visit, marked as a repeat; the venue's log keeps one.
    await resident.page.reload();
    assert.match(await text(resident.page, '#scan-answer'), /重复扫码/);
    const log = await api(office.page, 'GET', `/api/v1/venues/${venue.body.id}/visits`);
    assert.equal(log.body.visits.length, 1, JSON.stringify(log.body));
    assert.equal(log.body.visits[0].admission, 'pass');

    for (const x of [office, resident]) {
      assert.deepEqual(x.problems, []);
    }
  });
});
