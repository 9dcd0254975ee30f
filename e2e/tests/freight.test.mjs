// The freight loop in the browser, on phone screens of the four parties: the checkpoint
// checks a closed-loop truck in and hands it to the escort, the escort accepts, the cargo
// owner confirms arrival and departure, and the checkpoint's exit scan by plate closes the loop. When
// the receiver's escort rejects, the deadline watcher (every 10 s on the demo server's real
// clock) redirects the truck to the police on the fallback roster, whose escort accepts; the
// command office keeps that roster on its own page.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VIEWPORTS, startServer, launchBrowser, newPage, login, screenshot, widths, text } from '../lib/harness.mjs';

const phone = VIEWPORTS.find((v) => v.name === 'phone');
const desktop = VIEWPORTS.find((v) => v.name === 'desktop');

/** Choose the option whose label contains `part`. */
async function choose(page, selector, part) {
  const value = await page.$eval(
    selector,
    (el, p) => [...el.options].find((o) => o.textContent.includes(p))?.value,
    part,
  );
  assert.ok(value, `no option containing ${part} in ${selector}`);
  await page.selectOption(selector, value);
}

async function submit(page, formId) {
  await Promise.all([page.waitForLoadState('load'), page.click(`#${formId} button[type="submit"]`)]);
}

describe('freight loop on phones', () => {
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

  test('a closed-loop truck from check-in to exit, passed from hand to hand', async () => {
    const parties = {};
    for (const user of ['checkpoint', 'escort', 'enterprise']) {
      parties[user] = await newPage(browser, phone, server.baseURL);
      await login(parties[user].page, user);
    }
    const cp = parties.checkpoint.page;
    // Check-in: a walk-in with a yellow code is classified closed loop.
    await cp.goto('/trips/check-in');
    await cp.fill('#f-plate', '晋D66666');
    await choose(cp, '#f-destination_id', '壶关县太行钢材贸易有限公司');
    await cp.fill('#f-crew_name', '李师傅');
    await cp.fill('#f-crew_id_number', '11010519491231002X');
    await cp.fill('#f-crew_phone', '13912345678');
    await cp.selectOption('#f-crew_health_code', 'yellow');
    await cp.fill('#f-landing_tube', 'LT-E2E-0001');
    await screenshot(cp, 'phone-freight-1-check-in-form');
    await submit(cp, 'check-in-form');
    assert.match(cp.url(), /\/trips\/[0-9a-f-]{36}/);
    const tripUrl = new URL(cp.url()).pathname;
    const page1 = await text(cp, 'main');
    assert.match(page1, /闭环管控/, 'the class is shown');
    assert.match(page1, /健康码为黄码/, 'and why');
    assert.match(page1, /龙泉高速出口卡口/, 'the checkpoint holds it');
    await screenshot(cp, 'phone-freight-2-checked-in');
    // The driver opens their code on their own phone, without an account.
    const codeUrl = await cp.getAttribute('.code-link', 'href');
    assert.match(codeUrl, /\/code\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const driver = await newPage(browser, phone, server.baseURL);
    await driver.page.goto(new URL(codeUrl).pathname);
    assert.equal(await driver.page.getAttribute('#trip-code', 'data-class'), 'closed_loop');
    assert.match(await text(driver.page, '#code-class'), /闭环管控/);
    assert.match(await text(driver.page, '#code-instructions'), /接返人员/);
    await screenshot(driver.page, 'phone-freight-driver-code-zh');
    await driver.page.click('#lang-switch');
    await driver.page.waitForSelector('html[lang="en"]', { state: 'attached' });
    assert.match(await text(driver.page, '#code-instructions'), /escort/);
    await screenshot(driver.page, 'phone-freight-driver-code-en');
    // A forged code is refused with a reason.
    const forged = new URL(codeUrl).pathname.replace(/\.[^.]+$/, '.AAAA');
    const r = await driver.page.goto(forged);
    assert.equal(r.status(), 409);
    assert.match(await text(driver.page, '#error-message'), /签名无效|signature/);
    await driver.context.close();
    // Hand to the escort; the checkpoint stays answerable until the escort accepts.
    await choose(cp, '#handoff-form select[name="to"]', '壶关县交通运输局');
    await cp.selectOption('#handoff-form select[name="purpose"]', 'escort');
    await submit(cp, 'handoff-form');
    assert.match(await text(cp, 'main'), /待接收交接/);
    // The escort finds it among its trips and accepts.
    const es = parties.escort.page;
    await es.goto('/trips');
    await es.click('text=晋D66666');
    await es.waitForURL((u) => u.pathname === tripUrl);
    await screenshot(es, 'phone-freight-3-escort-sees-handoff');
    await submit(es, 'accept-form');
    assert.match(await text(es, 'main'), /接返中/);
    // The cargo owner confirms arrival, then departure.
    const en = parties.enterprise.page;
    await en.goto(tripUrl);
    await submit(en, 'arrival-form');
    assert.match(await text(en, 'main'), /已到达/);
    await screenshot(en, 'phone-freight-4-arrived');
    await submit(en, 'departure-form');
    assert.match(await text(en, 'main'), /已离开/);
    // The exit scan closes the loop: the plate typed (or scanned) at the exit page, as any
    // checkpoint of the county would; the chain shows every holder.
    await cp.goto('/trips/exit');
    await cp.fill('#f-plate', '晋D66666');
    await screenshot(cp, 'phone-freight-5-exit-by-plate');
    await submit(cp, 'exit-form');
    assert.equal(new URL(cp.url()).pathname, tripUrl);
    const closed = await text(cp, 'main');
    assert.match(closed, /已驶离\(闭环\)/);
    for (const holder of ['龙泉高速出口卡口', '壶关县交通运输局', '壶关县太行钢材贸易有限公司']) {
      assert.ok(closed.includes(holder), `${holder} is in the chain`);
    }
    await screenshot(cp, 'phone-freight-5-closed');
    const w = await widths(cp);
    assert.ok(w.scrollWidth <= w.innerWidth + 1, `no horizontal scroll (${w.scrollWidth} > ${w.innerWidth})`);
    for (const p of Object.values(parties)) {
      assert.deepEqual(p.problems, []);
      await p.context.close();
    }
  });

  test('a rejected escort: the watcher sends the truck to the fallback escort, whose escort accepts on a phone', async () => {
    const parties = {};
    for (const user of ['checkpoint', 'escort', 'police']) {
      parties[user] = await newPage(browser, phone, server.baseURL);
      await login(parties[user].page, user);
    }
    const cp = parties.checkpoint.page;
    await cp.goto('/trips/check-in');
    await cp.fill('#f-plate', '晋D77777');
    await choose(cp, '#f-destination_id', '壶关县太行钢材贸易有限公司');
    await cp.fill('#f-crew_name', '赵师傅');
    await cp.fill('#f-crew_id_number', '11010519491231002X');
    await cp.selectOption('#f-crew_health_code', 'yellow');
    await cp.fill('#f-landing_tube', 'LT-E2E-0003');
    await submit(cp, 'check-in-form');
    const tripUrl = new URL(cp.url()).pathname;
    // The form starts on the receiver's own escort unit.
    const proposed = await cp.$eval('#handoff-form select[name="to"]', (el) => el.selectedOptions[0].textContent);
    assert.match(proposed, /壶关县交通运输局/);
    await submit(cp, 'handoff-form');
    // The receiver's escort rejects, with a reason.
    const es = parties.escort.page;
    await es.goto(tripUrl);
    await es.fill('#reject-form input[name="reason"]', '车辆均已派出');
    await submit(es, 'reject-form');
    assert.equal(await es.$('#accept-form'), null, 'rejected, it is no longer the escort\'s to accept');
    // The watcher redirects it to the police; the trip page says why.
    let facts = '';
    for (let i = 0; i < 40 && !/壶关县公安局/.test(facts); i += 1) {
      await cp.waitForTimeout(1_000);
      await cp.goto(tripUrl);
      facts = await text(cp, '#trip');
    }
    assert.match(facts, /待接收交接\s*→ 壶关县公安局 · 接返护送 \(接返交接被拒收\)/, facts);
    assert.match(facts, /龙泉高速出口卡口/, 'the checkpoint stays answerable until the police accept');
    await screenshot(cp, 'phone-freight-8-fallback-escort');
    // The police escort finds it among their trips and accepts on a phone.
    const po = parties.police.page;
    await po.goto('/trips');
    await po.click('text=晋D77777');
    await po.waitForURL((u) => u.pathname === tripUrl);
    assert.match(await text(po, '#trip'), /接返交接被拒收/);
    await screenshot(po, 'phone-freight-9-police-sees-fallback');
    await submit(po, 'accept-form');
    const done = await text(po, 'main');
    assert.match(done, /接返中/);
    assert.match(await text(po, '#trip-chain'), /龙泉高速出口卡口[\s\S]*壶关县公安局/);
    const w = await widths(po);
    assert.ok(w.scrollWidth <= w.innerWidth + 1, `no horizontal scroll (${w.scrollWidth} > ${w.innerWidth})`);
    for (const p of Object.values(parties)) {
      assert.deepEqual(p.problems, []);
      await p.context.close();
    }
  });

  test('the command office reorders the fallback roster on a phone; the roster page on a desktop', async () => {
    const office = await newPage(browser, phone, server.baseURL);
    const cmd = office.page;
    await login(cmd, 'commander');
    await cmd.click('.nav-menu summary');
    await Promise.all([cmd.waitForLoadState('load'), cmd.click('.nav-menu a[href="/freight/escorts"]')]);
    const order = async () => (await cmd.$$eval('#escort-fallback td[data-label="名称"]', (tds) => tds.map((t) => t.textContent.trim())));
    assert.deepEqual(await order(), ['壶关县公安局', '壶关县交通运输局']);
    assert.match(await text(cmd, '#escort-receivers'), /壶关县太行钢材贸易有限公司[\s\S]*壶关县交通运输局/);
    await screenshot(cmd, 'phone-escort-roster');
    // Transport first, then back: the order on the page is the order stored.
    await choose(cmd, '#fallback-change-form select[name="entry"]', '壶关县交通运输局');
    await cmd.selectOption('#fallback-change-form select[name="step"]', 'up');
    await submit(cmd, 'fallback-change-form');
    assert.match(await text(cmd, '.flash'), /已保存/);
    assert.deepEqual(await order(), ['壶关县交通运输局', '壶关县公安局']);
    await choose(cmd, '#fallback-change-form select[name="entry"]', '壶关县交通运输局');
    await cmd.selectOption('#fallback-change-form select[name="step"]', 'down');
    await submit(cmd, 'fallback-change-form');
    assert.deepEqual(await order(), ['壶关县公安局', '壶关县交通运输局']);
    const w = await widths(cmd);
    assert.ok(w.scrollWidth <= w.innerWidth + 1, `no horizontal scroll (${w.scrollWidth} > ${w.innerWidth})`);
    assert.deepEqual(office.problems, []);
    await office.context.close();
    const wide = await newPage(browser, desktop, server.baseURL);
    await login(wide.page, 'commander');
    await wide.page.goto('/freight/escorts');
    await wide.page.click('#lang-switch');
    await wide.page.waitForSelector('html[lang="en"]', { state: 'attached' });
    assert.match(await text(wide.page, '#escort-fallback'), /Fallback roster \(police, transport\)/);
    await screenshot(wide.page, 'desktop-escort-roster-en');
    assert.deepEqual(wide.problems, []);
    await wide.context.close();
  });

  test('a service site admits a truck, lists it as waiting, lets it go; the cargo owner confirms its duty', async () => {
    const parties = {};
    for (const user of ['checkpoint', 'site', 'enterprise']) {
      parties[user] = await newPage(browser, phone, server.baseURL);
      await login(parties[user].page, user);
    }
    const cp = parties.checkpoint.page;
    await cp.goto('/trips/check-in');
    await cp.fill('#f-plate', '晋D55555');
    await choose(cp, '#f-destination_id', '壶关县太行钢材贸易有限公司');
    await cp.fill('#f-crew_name', '王师傅');
    await cp.fill('#f-crew_id_number', '11010519491231002X');
    await cp.fill('#f-landing_tube', 'LT-E2E-0002');
    await submit(cp, 'check-in-form');
    const tripUrl = new URL(cp.url()).pathname;
    // The site's staff land on their own gate, set a capacity of one and admit the truck.
    const site = parties.site.page;
    await site.goto('/sites');
    await site.waitForSelector('#site-check-in-form');
    await site.fill('#site-capacity-form input[name="capacity"]', '1');
    await submit(site, 'site-capacity-form');
    await site.fill('#site-check-in-form input[name="plate"]', '晋D55555');
    await submit(site, 'site-check-in-form');
    let gate = await text(site, 'main');
    assert.match(gate, /晋D55555/);
    assert.match(gate, /在场车辆 1 \/ 容量\(辆\) 1 · 待出结果 1/);
    await screenshot(site, 'phone-freight-6-site-gate');
    // A bad plate is refused next to its field, in the user's language.
    await site.fill('#site-check-in-form input[name="plate"]', '晋D5555');
    await submit(site, 'site-check-in-form');
    assert.ok(await site.$('#site-check-in-form .field-error[data-field="plate"]'), 'the plate error is shown at the field');
    // Result in, then out: the site is empty again and the stay is on the trip's record.
    await submit(site, 'site-result-form');
    assert.match(await text(site, 'main'), /待出结果 0/);
    await submit(site, 'site-check-out-form');
    assert.match(await text(site, 'main'), /在场车辆 0/);
    const w = await widths(site);
    assert.ok(w.scrollWidth <= w.innerWidth + 1, `no horizontal scroll (${w.scrollWidth} > ${w.innerWidth})`);
    // The cargo owner sees the ledger on the trip and confirms its duty; the stay is listed.
    const en = parties.enterprise.page;
    await en.goto(tripUrl);
    assert.match(await text(en, '#trip-stays'), /壶关县货车专用服务场地/);
    assert.match(await text(en, '#trip-ledger'), /货主企业[\s\S]*未确认/);
    await submit(en, 'confirm-form');
    assert.match(await text(en, '#trip-ledger'), /货主企业[\s\S]*已确认/);
    assert.equal(await en.$('#confirm-form'), null, 'confirmed once, the button is gone');
    await screenshot(en, 'phone-freight-7-ledger-confirmed');
    for (const p of Object.values(parties)) {
      assert.deepEqual(p.problems, []);
      await p.context.close();
    }
  });
});
