// Opens the Phaser check page in headless Chromium and prints the report as JSON.
// Usage: node run_phaser.mjs URL
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  const console_lines = [];
  page.on("console", message => console_lines.push(message.text()));
  await page.goto(process.argv[2]);
  await page.waitForFunction(() => window.__report !== undefined, null, { timeout: 60000 });
  const report = await page.evaluate(() => window.__report);
  report.console = console_lines;
  process.stdout.write(JSON.stringify(report));
} finally {
  await browser.close();
}
