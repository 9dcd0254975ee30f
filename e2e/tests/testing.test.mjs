// Sampling and testing in the browser. On a phone the sampler scans a 5-in-1 tube open and
// types five ID numbers one after another (the field to fill next always has the focus, so a
// scanner's code-then-Enter is all it takes); the full tube seals itself and goes into a batch
// for the lab. The lab receives the batch by scanning the tube and posts a positive result;
// the township's staff then find all five on the pending re-check list.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VIEWPORTS, startServer, launchBrowser, newPage, login, screenshot, widths, text, switchLang } from '../lib/harness.mjs';

const phone = VIEWPORTS.find((v) => v.name === 'phone');
const desktop = VIEWPORTS.find((v) => v.name === 'desktop');

const BARCODE = 'HG-E2E-0001';
const PEOPLE = ['张伟', '王芳', '李娜', '刘洋', '陈静'];

/** A resident ID number with its GB 11643 check character. */
function idNumber(seq) {
  const first17 = `1404271988${String(seq + 1).padStart(2, '0')}15${300 + seq}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...first17].reduce((acc, d, i) => acc + Number(d) * weights[i], 0);
  return first17 + '10X98765432'[sum % 11];
}

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

const focused = (page) => page.evaluate(() => document.activeElement?.id ?? '');

/** Press a key that submits a form, and wait for the page that answers. */
async function pressAndLoad(page, key) {
  await Promise.all([page.waitForNavigation(), page.keyboard.press(key)]);
}

async function submit(page, formId) {
  await Promise.all([page.waitForNavigation(), page.click(`#${formId} button[type="submit"]`)]);
}

async function noSidewaysScroll(page, what) {
  const w = await widths(page);
  assert.ok(w.scrollWidth <= w.innerWidth + 1, `${what} scrolls sideways (${w.scrollWidth} > ${w.innerWidth})`);
}

describe('sampling and testing', () => {
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

  test('a positive 5-in-1 pool: sampled by phone, received and resulted by the lab, its members on the re-check list', async () => {
    const sampler = await newPage(browser, phone, server.baseURL);
    const sp = sampler.page;
    await login(sp, 'sampler');
    // The desk: the barcode field has the focus; pool size and priority are set once.
    await sp.goto('/testing/sample');
    assert.equal(await focused(sp), 'f-barcode');
    await sp.selectOption('#f-pool_size', '5');
    await sp.selectOption('#f-priority', 'routine');
    await choose(sp, '#f-site_id', '龙泉镇政府广场采样点');
    await screenshot(sp, 'phone-testing-1-desk');
    await noSidewaysScroll(sp, 'the sampling desk');
    // The scanner types the code and presses Enter.
    await sp.focus('#f-barcode');
    await sp.keyboard.type(BARCODE);
    await pressAndLoad(sp, 'Enter');
    assert.match(new URL(sp.url()).pathname, /^\/testing\/tubes\/[0-9a-f-]{36}$/);
    assert.equal(await sp.getAttribute('#tube', 'data-state'), 'open');
    assert.equal(await text(sp, '#fact-fill'), '0 / 5');
    assert.equal(await focused(sp), 'f-document_number', 'ready for the first ID card');
    // The first person is new: Enter on the number alone asks for the name, with the focus on it.
    await sp.keyboard.type(idNumber(0));
    await pressAndLoad(sp, 'Enter');
    assert.match(await text(sp, '.field-error[data-field="name"]'), /首次登记的人员请填写姓名/);
    assert.equal(await focused(sp), 'f-name');
    assert.equal(await sp.inputValue('#f-document_number'), idNumber(0), 'the number is kept');
    await screenshot(sp, 'phone-testing-2-name-needed');
    await sp.keyboard.type(PEOPLE[0]);
    await pressAndLoad(sp, 'Enter');
    // The rest one after another: after each, the focus is back on the document number.
    for (let i = 0; i < PEOPLE.length; i++) {
      if (i > 0) {
        await sp.keyboard.type(idNumber(i));
        await sp.fill('#f-name', PEOPLE[i]);
        await pressAndLoad(sp, 'Enter');
      }
      if (i < PEOPLE.length - 1) {
        assert.equal(await text(sp, '#fact-fill'), `${i + 1} / 5`);
        assert.match(await text(sp, '.flash'), new RegExp(`已添加 ${PEOPLE[i]}`));
        assert.equal(await focused(sp), 'f-document_number', `focus back on the number after person ${i + 1}`);
        assert.match(await text(sp, '#members'), new RegExp(PEOPLE[i]));
        if (i === 2) await screenshot(sp, 'phone-testing-3-three-of-five');
      }
    }
    // The fifth filled the tube: sealed, back at the desk with the same choices, focus on the barcode.
    assert.equal(new URL(sp.url()).pathname, '/testing/sample');
    assert.match(await text(sp, '.flash'), new RegExp(`${BARCODE} 已封管，人数 5 / 5`));
    assert.equal(await focused(sp), 'f-barcode', 'ready for the next tube');
    assert.equal(await sp.inputValue('#f-pool_size'), '5', 'the pool size is kept');
    assert.ok(await sp.isChecked(`#pack-form input[name="barcodes"][value="${BARCODE}"]`), 'the sealed tube is ticked for the batch');
    await choose(sp, '#f-lab_id', '壶关县人民医院核酸检测实验室');
    await screenshot(sp, 'phone-testing-4-sealed-pack');
    await submit(sp, 'pack-form');
    assert.match(new URL(sp.url()).pathname, /^\/testing\/batches\/[0-9a-f-]{36}$/);
    const batchPath = new URL(sp.url()).pathname;
    assert.match(await text(sp, '#fact-state'), /已移交待接收/);
    assert.match(await text(sp, '#batch-tubes'), new RegExp(BARCODE));
    await screenshot(sp, 'phone-testing-5-batch-handed');
    await noSidewaysScroll(sp, 'the batch page');

    // The lab, at a desktop: the batch awaits receipt; scan what is in the box.
    const lab = await newPage(browser, desktop, server.baseURL);
    const lp = lab.page;
    await login(lp, 'lab');
    await lp.goto('/testing/lab');
    const batchLink = lp.locator(`#awaiting-receipt a[href="${batchPath}"]`);
    assert.equal(await batchLink.count(), 1, 'the batch is listed for receipt');
    await Promise.all([lp.waitForNavigation(), batchLink.click()]);
    assert.equal(await focused(lp), 'f-barcodes', 'ready to scan the box');
    await lp.keyboard.type(BARCODE);
    await lp.keyboard.press('Enter');
    await submit(lp, 'receive-form');
    assert.equal(await lp.getAttribute('#batch', 'data-state'), 'received');
    assert.equal(await text(lp, '#fact-missing'), '无');
    assert.equal(await text(lp, '#fact-extra'), '无');
    await screenshot(lp, 'desktop-testing-6-batch-received');
    // The result: scan the tube, positive, a Ct value, Enter.
    await lp.goto('/testing/lab');
    assert.equal(await focused(lp), 'f-barcode');
    await lp.keyboard.type(BARCODE);
    await lp.selectOption('#f-result', 'positive');
    await lp.focus('#f-ct');
    await lp.fill('#f-ct', '27.3');
    await pressAndLoad(lp, 'Enter');
    const flash = await text(lp, '.flash');
    assert.match(flash, new RegExp(`${BARCODE} · 阳性`));
    assert.match(flash, /转待复核人数 5/);
    await screenshot(lp, 'desktop-testing-7-positive-posted');
    await lp.goto('/testing/dashboard');
    assert.match(await text(lp, '#by-priority'), /常规/);
    await screenshot(lp, 'desktop-testing-8-dashboard');

    // The township of residence sees all five on the pending re-check list, on a phone.
    const town = await newPage(browser, phone, server.baseURL);
    const tp = town.page;
    await login(tp, 'longquan');
    await tp.goto('/testing/rechecks');
    const list = await text(tp, 'main');
    for (const name of PEOPLE) assert.ok(list.includes(name), `${name} is pending re-check`);
    assert.ok(list.includes(BARCODE), 'the positive pool is named');
    assert.ok(!list.includes(idNumber(0)), 'ID numbers are masked');
    await screenshot(tp, 'phone-testing-9-pending-recheck-zh');
    await noSidewaysScroll(tp, 'the re-check list');
    await switchLang(tp, 'en');
    assert.match(await text(tp, 'h1'), /Pending re-check/);
    assert.match(await text(tp, 'main'), /Not sampled yet/);
    await screenshot(tp, 'phone-testing-10-pending-recheck-en');

    for (const p of [sampler, lab, town]) {
      assert.deepEqual(p.problems, []);
      await p.context.close();
    }
  });
});
