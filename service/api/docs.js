// Swagger UI on this server's OpenAPI document: the script of GET /docs, served as a file (GET /docs/docs.js) so
// the page's Content-Security-Policy can refuse every inline script. The document's address is the page's
// data-spec attribute. A token typed into "Authorize" lasts as long as the page: persistAuthorization would keep
// it in the browser's localStorage, readable by any script of this origin long after.
"use strict";

window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.spec,
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
});
